import CryptoKit
import Foundation

/// One CoreML configuration, named as in schemas/benchmark.schema.json (delegate "coreml" + compute units).
public struct RuntimeConfig: Equatable {
    public static let computeUnitNames = ["cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all"]
    public let computeUnits: String

    public init(computeUnits: String) throws {
        guard Self.computeUnitNames.contains(computeUnits) else {
            throw ContractError("compute units \"\(computeUnits)\" is not one of \(Self.computeUnitNames)")
        }
        self.computeUnits = computeUnits
    }
}

/// The model loaded for one configuration; loading it is what `init_ms` measures.
public protocol BenchmarkSession {
    /// One prediction on fixed input, excluding pre- and post-processing.
    func invoke() throws
}

public struct BenchmarkPlan {
    public let configs: [RuntimeConfig]
    public let warmupRuns: Int, runs: Int

    public init(configs: [RuntimeConfig], warmupRuns: Int = 10, runs: Int = 100) {
        precondition(!configs.isEmpty && warmupRuns >= 0 && runs >= 1, "benchmark plan needs configs, runs >= 1")
        self.configs = configs; self.warmupRuns = warmupRuns; self.runs = runs
    }
}

public struct BenchmarkResult {
    public let config: RuntimeConfig
    public let initMs: Double, firstMs: Double
    public let samplesMs: [Double]
    public let warmupRuns: Int
    public var summary: LatencySummary { LatencySummary(samplesMs: samplesMs) }
}

/// A configuration that could not run; reported, not fatal.
public struct BenchmarkFailure {
    public let config: RuntimeConfig
    public let error: String
}

/// A fixed number of predictions per configuration; the clock (nanoseconds) is injectable for tests.
public struct BenchmarkRunner {
    private let clockNanos: () -> UInt64

    public init(clockNanos: @escaping () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }) {
        self.clockNanos = clockNanos
    }

    public func run(_ plan: BenchmarkPlan, openSession: (RuntimeConfig) throws -> BenchmarkSession,
                    progress: (Int, Int, RuntimeConfig) -> Void = { _, _, _ in })
        -> (results: [BenchmarkResult], failures: [BenchmarkFailure]) {
        var results: [BenchmarkResult] = [], failures: [BenchmarkFailure] = []
        for (i, config) in plan.configs.enumerated() {
            progress(i, plan.configs.count, config)
            do {
                results.append(try runOne(plan, config, openSession))
            } catch {
                failures.append(BenchmarkFailure(config: config, error: "\(error)"))
            }
        }
        progress(plan.configs.count, plan.configs.count, plan.configs[plan.configs.count - 1])
        return (results, failures)
    }

    private func ms(since t0: UInt64) -> Double { Double(clockNanos() - t0) / 1e6 }

    private func runOne(_ plan: BenchmarkPlan, _ config: RuntimeConfig,
                        _ openSession: (RuntimeConfig) throws -> BenchmarkSession) throws -> BenchmarkResult {
        var t0 = clockNanos()
        let session = try openSession(config)
        let initMs = ms(since: t0)
        t0 = clockNanos()
        try session.invoke()
        let firstMs = ms(since: t0)
        for _ in 0..<plan.warmupRuns { try session.invoke() }
        var samples = [Double](repeating: 0, count: plan.runs)
        for k in 0..<plan.runs {
            t0 = clockNanos()
            try session.invoke()
            samples[k] = ms(since: t0)
        }
        return BenchmarkResult(config: config, initMs: initMs, firstMs: firstMs, samplesMs: samples,
                               warmupRuns: plan.warmupRuns)
    }
}

public struct DeviceInfo {
    public let model: String, os: String, manufacturer: String, soc: String, cpuCores: Int?

    public init(model: String, os: String, manufacturer: String = "Apple", soc: String = "", cpuCores: Int? = nil) {
        self.model = model; self.os = os; self.manufacturer = manufacturer; self.soc = soc; self.cpuCores = cpuCores
    }
}

public struct ModelInfo {
    public let file: String, sha256: String, sizeBytes: Int?, contract: String?

    public init(file: String, sha256: String, sizeBytes: Int?, contract: String?) throws {
        guard !file.isEmpty else { throw ContractError("model file name is empty") }
        guard sha256.count == 64, sha256.allSatisfy({ "0123456789abcdef".contains($0) }) else {
            throw ContractError("sha256 must be 64 lowercase hex digits, got \"\(sha256)\"")
        }
        self.file = file; self.sha256 = sha256; self.sizeBytes = sizeBytes; self.contract = contract
    }
}

public enum SHA256Hex {
    public static func of(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// What schemas/benchmark.schema.json hashes: a file, or for a .mlpackage its weights/weight.bin.
    public static func ofModel(at url: URL) throws -> String {
        var target = url
        if url.pathExtension == "mlpackage" {
            target = url.appendingPathComponent("Data/com.apple.CoreML/weights/weight.bin")
        }
        guard let data = try? Data(contentsOf: target, options: .mappedIfSafe) else {
            throw ContractError("\(target.path): cannot read the model to hash it")
        }
        return of(data)
    }
}

/// The benchmark JSON of schemas/benchmark.schema.json, which `python -m tfalign.profile --import` reads.
public struct BenchmarkReport {
    public let device: DeviceInfo
    public let model: ModelInfo
    public let results: [BenchmarkResult]
    public let failures: [BenchmarkFailure]
    public let runtimeVersion: String?
    public let createdISO: String?
    public let toolVersion: String

    public init(device: DeviceInfo, model: ModelInfo, results: [BenchmarkResult], failures: [BenchmarkFailure] = [],
                runtimeVersion: String? = nil, createdISO: String? = nil, toolVersion: String = "0.1.0") throws {
        guard !results.isEmpty else {
            throw ContractError("no configuration ran; failures: " +
                                failures.map { "\($0.config.computeUnits): \($0.error)" }.joined(separator: "; "))
        }
        self.device = device; self.model = model; self.results = results; self.failures = failures
        self.runtimeVersion = runtimeVersion; self.createdISO = createdISO; self.toolVersion = toolVersion
    }

    public func dictionary() -> [String: Any] {
        var root: [String: Any] = ["format_version": 1, "tool": ["name": "tfalign-ios", "version": toolVersion]]
        if let c = createdISO { root["created"] = c }
        var dev: [String: Any] = ["model": device.model, "os": device.os, "manufacturer": device.manufacturer,
                                  "soc": device.soc, "abi": "arm64"]
        if let n = device.cpuCores { dev["cpu_cores"] = n }
        root["device"] = dev
        var mod: [String: Any] = ["file": model.file, "sha256": model.sha256]
        if let s = model.sizeBytes { mod["size_bytes"] = s }
        if let c = model.contract { mod["contract"] = c }
        root["model"] = mod
        root["results"] = results.map { r -> [String: Any] in
            let s = r.summary
            var m: [String: Any] = [
                "runtime": "coreml", "delegate": "coreml", "compute_units": r.config.computeUnits,
                "threads": NSNull(), "warmup_runs": r.warmupRuns, "runs": s.count, "init_ms": r.initMs,
                "first_ms": r.firstMs, "p50_ms": s.p50Ms, "p90_ms": s.p90Ms, "p95_ms": s.p95Ms, "p99_ms": s.p99Ms,
                "mean_ms": s.meanMs, "min_ms": s.minMs, "max_ms": s.maxMs,
            ]
            if let v = runtimeVersion { m["runtime_version"] = v }
            return m
        }
        if !failures.isEmpty {
            root["skipped"] = failures.map { ["compute_units": $0.config.computeUnits, "error": $0.error] }
        }
        return root
    }

    public func jsonData() throws -> Data {
        try JSONSerialization.data(withJSONObject: dictionary(), options: [.prettyPrinted, .sortedKeys])
    }

    /// Writes atomically (temp file + rename): `adb`-style pulls and the Files app never see half a report.
    @discardableResult
    public func write(to url: URL) throws -> URL {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try jsonData().write(to: url, options: .atomic)
        return url
    }
}
