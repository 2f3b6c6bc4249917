import CoreML
import Foundation
import TFAlignCore
import UIKit

/// Benchmark mode: a fixed number of predictions per compute-unit setting (TFAlignCore `BenchmarkRunner`), written
/// as schemas/benchmark.schema.json to Documents/benchmarks (visible in Finder / the Files app) for
/// `python -m tfalign.profile --import`. Also started by the launch argument `-benchmark MODEL_NAME`.
enum BenchmarkController {
    static func run(_ entry: ModelEntry, units: [ComputeUnits] = ComputeUnits.allCases, warmup: Int = 10,
                    runs: Int = 100, progress: @escaping (String) -> Void) async throws -> URL {
        let compiled = try await ModelStore.compiled(entry)
        let plan = BenchmarkPlan(configs: try units.map { try RuntimeConfig(computeUnits: $0.rawValue) },
                                 warmupRuns: warmup, runs: runs)
        // init_ms = MLModel load for these compute units (compilation is cached and not counted).
        let (results, failures) = BenchmarkRunner().run(plan, openSession: { config in
            let predictor = try LandmarkPredictor(entry: entry, compiledURL: compiled,
                                                  units: ComputeUnits(rawValue: config.computeUnits)!)
            return PredictorSession(predictor: predictor, input: try predictor.fixedInput())
        }, progress: { done, total, config in progress("benchmark \(done)/\(total): \(config.computeUnits)") })
        let sha = try SHA256Hex.ofModel(at: entry.packageURL)
        let model = try ModelInfo(file: entry.packageURL.lastPathComponent, sha256: sha,
                                  sizeBytes: directorySize(entry.packageURL), contract: entry.contractURL.lastPathComponent)
        let report = try BenchmarkReport(device: deviceInfo(), model: model, results: results, failures: failures,
                                         createdISO: ISO8601DateFormatter().string(from: Date()))
        let docs = try FileManager.default.url(for: .documentDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        let stamp = ISO8601DateFormatter().string(from: Date()).filter(\.isNumber)
        return try report.write(to: docs.appendingPathComponent("benchmarks/\(entry.name)-\(machine())-\(stamp).json"))
    }

    private struct PredictorSession: BenchmarkSession {
        let predictor: LandmarkPredictor
        let input: MLFeatureProvider
        func invoke() throws { _ = try predictor.model.prediction(from: input) }
    }

    /// The hardware identifier, e.g. "iPhone14,2" (UIDevice only says "iPhone").
    static func machine() -> String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    private static func deviceInfo() -> DeviceInfo {
        DeviceInfo(model: machine(), os: "iOS \(UIDevice.current.systemVersion)", soc: "",
                   cpuCores: ProcessInfo.processInfo.activeProcessorCount)
    }

    private static func directorySize(_ url: URL) -> Int? {
        guard let e = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.fileSizeKey]) else { return nil }
        return e.compactMap { ($0 as? URL).flatMap { try? $0.resourceValues(forKeys: [.fileSizeKey]).fileSize } }.reduce(0, +)
    }
}
