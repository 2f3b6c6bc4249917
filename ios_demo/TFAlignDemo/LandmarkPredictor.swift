import CoreML
import CoreVideo
import Foundation
import TFAlignCore

/// Compute units by the names of schemas/benchmark.schema.json.
enum ComputeUnits: String, CaseIterable, Identifiable {
    case cpuOnly, cpuAndGPU, cpuAndNeuralEngine, all
    var id: String { rawValue }

    var mlComputeUnits: MLComputeUnits {
        switch self {
        case .cpuOnly: return .cpuOnly
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        case .all: return .all
        }
    }
}

/// Landmarks in frame pixels for one face, with the time each stage took.
struct Estimate {
    let points: [Double]
    let window: CropWindow
    let preMs: Double, inferenceMs: Double, postMs: Double
}

/// Runs one contract-described CoreML model: crop + normalise (TFAlignCore `InputEncoder`), predict, decode
/// (TFAlignCore `LandmarkDecoder`). Image inputs (`normalization: "model"`) get a pixel buffer, others an
/// MLMultiArray. Not thread-safe: it is handed to the capture queue once and used only there (hence
/// `@unchecked Sendable`).
final class LandmarkPredictor: @unchecked Sendable {
    let entry: ModelEntry
    let model: MLModel
    private let contract: ModelContract
    private let encoder: InputEncoder
    private let decoder: LandmarkDecoder
    private let inputName: String
    private let outputName: String
    private var inputBuffer: CVPixelBuffer?

    init(entry: ModelEntry, compiledURL: URL, units: ComputeUnits) throws {
        self.entry = entry
        contract = entry.contract
        let config = MLModelConfiguration()
        config.computeUnits = units.mlComputeUnits
        model = try MLModel(contentsOf: compiledURL, configuration: config)
        encoder = InputEncoder(contract: contract)
        decoder = LandmarkDecoder(contract: contract)
        if contract.input.dtype.quantized && !contract.input.modelNormalizes {
            // MLMultiArray has no 8-bit type: CoreML models take images or float arrays.
            throw ContractError("\(contract.source): a quantized \(contract.input.dtype.rawValue) array input is a " +
                                "TFLite contract; CoreML models take an image (normalization \"model\") or floats")
        }
        let inputs = model.modelDescription.inputDescriptionsByName
        let outputs = model.modelDescription.outputDescriptionsByName
        inputName = contract.input.name ?? inputs.keys.first ?? ""
        outputName = contract.landmarks.name ?? outputs.keys.first ?? ""
        guard inputs[inputName] != nil else {
            throw ContractError("\(contract.source): input \"\(inputName)\" is not an input of the model " +
                                "(\(inputs.keys.sorted()))")
        }
        guard outputs[outputName] != nil else {
            throw ContractError("\(contract.source): output \"\(outputName)\" is not an output of the model " +
                                "(\(outputs.keys.sorted()))")
        }
    }

    /// `frame`: an upright BGRA camera frame; `box`: the face box the contract's crop is defined on.
    func estimate(_ frame: PixelFrame, box: FaceBox) throws -> Estimate {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let window = CropWindow(box: box, crop: contract.crop)
        let features = try inputFeatures(encoder.crop(frame, window: window))
        let t1 = DispatchTime.now().uptimeNanoseconds
        let result = try model.prediction(from: features)
        let t2 = DispatchTime.now().uptimeNanoseconds
        let points = try decoder.decode(try rawOutput(result), window: window)
        let t3 = DispatchTime.now().uptimeNanoseconds
        return Estimate(points: points, window: window, preMs: Double(t1 - t0) / 1e6,
                        inferenceMs: Double(t2 - t1) / 1e6, postMs: Double(t3 - t2) / 1e6)
    }

    /// Inputs for a crop of zeros: what benchmark mode predicts on (latency does not depend on the pixels).
    func fixedInput() throws -> MLFeatureProvider {
        try inputFeatures([UInt8](repeating: 0, count: contract.input.height * contract.input.width * contract.input.channels))
    }

    private func inputFeatures(_ crop: [UInt8]) throws -> MLFeatureProvider {
        let inp = contract.input
        let value: MLFeatureValue
        if inp.modelNormalizes {
            value = MLFeatureValue(pixelBuffer: try pixelBuffer(crop))
        } else {
            let shape = [1, inp.height, inp.width, inp.channels].map { NSNumber(value: $0) }
            let array = try MLMultiArray(shape: shape, dataType: inp.dtype == .float16 ? .float16 : .float32)
            for (k, v) in encoder.values(crop).enumerated() { array[k] = NSNumber(value: v) }
            value = MLFeatureValue(multiArray: array)
        }
        return try MLDictionaryFeatureProvider(dictionary: [inputName: value])
    }

    /// The crop as the image the ML Program's ImageType input expects (BGRA, or one 8-bit channel for GRAY).
    private func pixelBuffer(_ crop: [UInt8]) throws -> CVPixelBuffer {
        let inp = contract.input
        if inputBuffer == nil {
            let format = inp.gray ? kCVPixelFormatType_OneComponent8 : kCVPixelFormatType_32BGRA
            var pb: CVPixelBuffer?
            let attrs = [kCVPixelBufferIOSurfacePropertiesKey as String: [String: Any]()] as CFDictionary
            guard CVPixelBufferCreate(nil, inp.width, inp.height, format, attrs, &pb) == kCVReturnSuccess, let made = pb else {
                throw ContractError("cannot allocate a \(inp.width)x\(inp.height) pixel buffer")
            }
            inputBuffer = made
        }
        let pb = inputBuffer!
        CVPixelBufferLockBaseAddress(pb, [])
        defer { CVPixelBufferUnlockBaseAddress(pb, []) }
        let base = CVPixelBufferGetBaseAddress(pb)!.assumingMemoryBound(to: UInt8.self)
        let row = CVPixelBufferGetBytesPerRow(pb)
        for i in 0..<inp.height {
            for j in 0..<inp.width {
                if inp.gray {
                    base[i * row + j] = crop[i * inp.width + j]
                } else {
                    let s = 3 * (i * inp.width + j), d = i * row + 4 * j
                    base[d] = crop[s + 2]; base[d + 1] = crop[s + 1]; base[d + 2] = crop[s]; base[d + 3] = 255
                }
            }
        }
        return pb
    }

    private func rawOutput(_ result: MLFeatureProvider) throws -> [Double] {
        guard let array = result.featureValue(for: outputName)?.multiArrayValue else {
            throw ContractError("\(contract.source): the model returned no multi-array \"\(outputName)\"")
        }
        return (0..<array.count).map { array[$0].doubleValue }
    }
}
