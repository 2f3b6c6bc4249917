import Foundation

public enum DType: String, CaseIterable {
    case float32, float16, int8, uint8

    public var bytes: Int {
        switch self {
        case .float32: return 4
        case .float16: return 2
        case .int8, .uint8: return 1
        }
    }

    /// Integer tensors carry scale / zero_point; float16 needs no dequantization.
    public var quantized: Bool { self == .int8 || self == .uint8 }
    public var minQ: Double { self == .int8 ? -128 : 0 }
    public var maxQ: Double { self == .int8 ? 127 : 255 }

    static func parse(_ node: JSONNode) throws -> DType {
        DType(rawValue: try node.oneOf(DType.allCases.map(\.rawValue)))!
    }
}

/// Where normalised coordinate 0 lies: the crop's left/top edge, or the first pixel's centre.
public enum Origin: String, CaseIterable {
    case edge, center
}

public struct SchemeInfo {
    public let name: String
    public let numPoints: Int
    public let pointNames: [String]
}

/// `x = (pixel_0_255 - mean) / std`; integer inputs `q = round(x / scale) + zeroPoint` (half to even, as NumPy),
/// clamped. With `modelNormalizes` (CoreML image inputs) the client hands over raw 0-255 pixels.
public struct InputSpec {
    public let index: Int
    public let name: String?
    public let height: Int
    public let width: Int
    public let channels: Int
    public let gray: Bool
    public let dtype: DType
    public let mean: Double
    public let std: Double
    public let scale: Double
    public let zeroPoint: Int
    public let modelNormalizes: Bool
}

/// Crop: side = scale × max(w, h) of the face box (tight box of the scheme's points), centre = box centre +
/// (shiftX, shiftY) × side, resampled bilinearly; pixels outside the image read as `border`.
public struct CropSpec {
    public let scale: Double
    public let shiftX: Double
    public let shiftY: Double
    public let border: Double
}

/// Landmark output: `xy_normalized` x0, y0, x1, y1, ... in [0, 1] of the crop, dequantized as (q - zp) × scale.
public struct OutputSpec {
    public let index: Int
    public let name: String?
    public let shape: [Int]
    public let origin: Origin
    public let dtype: DType
    public let scale: Double
    public let zeroPoint: Int

    public var elements: Int { shape.reduce(1, *) }
}

/// The model contract (issue 6, schemas/contract.schema.json) written beside every exported model.
public struct ModelContract {
    /// Contract major version this code reads ("1.x": minor versions only add optional fields).
    public static let supportedMajorVersion = 1

    public let source: String
    public let formatVersion: Int
    public let scheme: SchemeInfo
    public let input: InputSpec
    public let crop: CropSpec
    public let landmarks: OutputSpec

    public static func load(_ url: URL) throws -> ModelContract {
        guard let data = try? Data(contentsOf: url) else {
            throw ContractError("\(url.path): contract file not found")
        }
        return try parse(data, source: url.lastPathComponent)
    }

    public static func parse(_ data: Data, source: String) throws -> ModelContract {
        let root = try JSONNode.parse(data, source: source)
        guard root.value is [String: Any] else { throw ContractError("\(source): a contract must be a JSON object") }
        let versionText = try root.get("format_version").string()
        let parts = versionText.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let major = Int(parts[0]), Int(parts[1]) != nil else {
            throw ContractError("\(source): format_version is \"\(versionText)\"; expected \"major.minor\"")
        }
        guard major == supportedMajorVersion else {
            throw ContractError("\(source): format_version is \"\(versionText)\"; this app reads " +
                                "\(supportedMajorVersion).x (update the app, or export with a matching tfalign)")
        }
        let scheme = try parseScheme(root.get("scheme"))
        let lm = try root.get("outputs").list().filter { try $0.get("kind").string() == "landmarks" }
        guard lm.count == 1 else {
            throw ContractError("\(source): outputs must hold exactly one entry with kind \"landmarks\"; " +
                                "found \(lm.count)")
        }
        return ModelContract(source: source, formatVersion: major, scheme: scheme,
                             input: try parseInput(root.get("input")), crop: try parseCrop(root.get("crop")),
                             landmarks: try parseLandmarks(lm[0], scheme))
    }

    private static func parseScheme(_ n: JSONNode) throws -> SchemeInfo {
        let count = try n.get("num_points").positiveInt()
        let names = try n.get("point_names").list().map { try $0.string() }
        guard names.count == count else {
            throw ContractError("\(n.source): \(n.path).point_names has \(names.count) names for num_points \(count)")
        }
        return SchemeInfo(name: try n.get("name").string(), numPoints: count, pointNames: names)
    }

    private static func parseInput(_ n: JSONNode) throws -> InputSpec {
        let channels = try n.get("channels").int()
        let color = try n.get("color").oneOf(["RGB", "GRAY"])
        guard (color == "GRAY") == (channels == 1), channels == 1 || channels == 3 else {
            throw ContractError("\(n.source): input.color \"\(color)\" does not match input.channels \(channels) " +
                                "(RGB needs 3, GRAY needs 1)")
        }
        let dtype = try DType.parse(n.get("dtype"))
        let modelNormalizes = try (n.opt("normalization")?.oneOf(["client", "model"]) ?? "client") == "model"
        let quantize = dtype.quantized && !modelNormalizes
        return InputSpec(index: try n.opt("index")?.int() ?? 0, name: try n.opt("name")?.string(),
                         height: try n.get("height").positiveInt(), width: try n.get("width").positiveInt(),
                         channels: channels, gray: color == "GRAY", dtype: dtype, mean: try n.get("mean").double(),
                         std: try n.get("std").positiveDouble(),
                         scale: try quantize ? n.get("scale").positiveDouble() : 1.0,
                         zeroPoint: try quantize ? n.get("zero_point").int() : 0, modelNormalizes: modelNormalizes)
    }

    private static func parseCrop(_ n: JSONNode) throws -> CropSpec {
        // Only the resampling and box tfalign trains with exist; a contract asking for others is refused.
        _ = try n.opt("interpolation")?.oneOf(["bilinear"])
        _ = try n.opt("box")?.oneOf(["landmarks_tight"])
        return CropSpec(scale: try n.get("scale").positiveDouble(), shiftX: try n.opt("shift_x")?.double() ?? 0,
                        shiftY: try n.opt("shift_y")?.double() ?? 0, border: try n.opt("border")?.double() ?? 0)
    }

    private static func parseLandmarks(_ n: JSONNode, _ scheme: SchemeInfo) throws -> OutputSpec {
        _ = try n.get("layout").oneOf(["xy_normalized"])
        let origin = Origin(rawValue: try n.get("origin").oneOf(Origin.allCases.map(\.rawValue)))!
        let dtype = try DType.parse(n.get("dtype"))
        let shape = try n.get("shape").ints()
        let out = OutputSpec(index: try n.opt("index")?.int() ?? 0, name: try n.opt("name")?.string(), shape: shape,
                             origin: origin, dtype: dtype,
                             scale: try dtype.quantized ? n.get("scale").positiveDouble() : 1.0,
                             zeroPoint: try dtype.quantized ? n.get("zero_point").int() : 0)
        guard shape.count >= 2, shape[shape.count - 1] == 2, shape[shape.count - 2] == scheme.numPoints,
              out.elements == 2 * scheme.numPoints else {
            throw ContractError("\(n.source): \(n.path).shape \(shape) must be [1, num_points, 2] = " +
                                "[1, \(scheme.numPoints), 2] for layout xy_normalized")
        }
        return out
    }
}
