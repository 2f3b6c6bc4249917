import Foundation
import TFAlignCore
import XCTest

final class BenchmarkTests: XCTestCase {
    /// Time advanced only by the fake sessions: loading takes 7 ms, a prediction 2 ms (all) or 5 ms (others).
    private final class Clock { var ns: UInt64 = 0 }

    private struct FakeSession: BenchmarkSession {
        let clock: Clock
        let costNs: UInt64
        func invoke() throws { clock.ns += costNs }
    }

    private struct NoNeuralEngine: Error, CustomStringConvertible {
        var description: String { "Neural Engine unavailable" }
    }

    func testMeasuresEveryConfigAndSkipsFailures() throws {
        let clock = Clock()
        let plan = BenchmarkPlan(configs: try RuntimeConfig.computeUnitNames.map { try RuntimeConfig(computeUnits: $0) },
                                 warmupRuns: 3, runs: 20)
        let (results, failures) = BenchmarkRunner(clockNanos: { clock.ns }).run(plan, openSession: { config in
            if config.computeUnits == "cpuAndNeuralEngine" { throw NoNeuralEngine() }
            clock.ns += 7_000_000
            return FakeSession(clock: clock, costNs: config.computeUnits == "all" ? 2_000_000 : 5_000_000)
        })
        XCTAssertEqual(results.map(\.config.computeUnits), ["cpuOnly", "cpuAndGPU", "all"])
        XCTAssertEqual(failures.map(\.error), ["Neural Engine unavailable"])
        XCTAssertEqual(results[2].summary.p50Ms, 2, accuracy: 1e-9)
        XCTAssertEqual(results[0].initMs, 7, accuracy: 1e-9)

        let sha = SHA256Hex.of(Data("model".utf8))
        XCTAssertEqual(sha, "9372c470eeadd5ecd9c3c74c2b3cb633f8e2f2fad799250a0f70d652b6b825e4")
        let report = try BenchmarkReport(device: DeviceInfo(model: "iPhone14,2", os: "iOS 17.5", soc: "A15"),
                                         model: try ModelInfo(file: "face.mlpackage", sha256: sha, sizeBytes: 5,
                                                              contract: "face.contract.json"),
                                         results: results, failures: failures, createdISO: "2026-11-21T07:00:00Z")
        let json = try JSONSerialization.jsonObject(with: report.jsonData()) as! [String: Any]
        XCTAssertEqual(json["format_version"] as? Int, 1)
        let r0 = (json["results"] as! [[String: Any]])[0]
        XCTAssertEqual(r0["delegate"] as? String, "coreml")
        XCTAssertEqual(r0["compute_units"] as? String, "cpuOnly")
        XCTAssertEqual(r0["p50_ms"] as! Double, 5, accuracy: 1e-9)
        // On macOS CI the report can be checked against schemas/benchmark.schema.json: TFALIGN_BENCHMARK_OUT=FILE.
        if let out = ProcessInfo.processInfo.environment["TFALIGN_BENCHMARK_OUT"] {
            try report.write(to: URL(fileURLWithPath: out))
        }
    }

    func testUnknownComputeUnitsAreRefused() {
        XCTAssertThrowsError(try RuntimeConfig(computeUnits: "tpu"))
    }

    func testReportNeedsOneResult() throws {
        let model = try ModelInfo(file: "m", sha256: String(repeating: "0", count: 64), sizeBytes: nil, contract: nil)
        XCTAssertThrowsError(try BenchmarkReport(device: DeviceInfo(model: "x", os: "y"), model: model, results: []))
    }
}
