import Foundation

/// Landmark output tensor → image pixel coordinates [x0, y0, x1, y1, ...].
public struct LandmarkDecoder {
    public let output: OutputSpec
    public let inputWidth: Int, inputHeight: Int

    public init(contract: ModelContract) {
        output = contract.landmarks
        inputWidth = contract.input.width
        inputHeight = contract.input.height
    }

    public var numPoints: Int { output.elements / 2 }

    /// `raw`: the tensor's stored values (floats, or the integers of a quantized tensor).
    public func decode(_ raw: [Double], window: CropWindow) throws -> [Double] {
        guard raw.count == output.elements else {
            throw ContractError("landmark tensor has \(raw.count) values, the contract says \(output.elements)")
        }
        var out = [Double](repeating: 0, count: raw.count)
        for p in 0..<(raw.count / 2) {
            out[2 * p] = window.imageX(dequantize(raw[2 * p]), width: inputWidth, origin: output.origin)
            out[2 * p + 1] = window.imageY(dequantize(raw[2 * p + 1]), height: inputHeight, origin: output.origin)
        }
        return out
    }

    private func dequantize(_ q: Double) -> Double {
        output.dtype.quantized ? (q - Double(output.zeroPoint)) * output.scale : q
    }
}
