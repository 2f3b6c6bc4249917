import Foundation

/// Summary of latency samples; percentiles interpolate linearly between ranks, as NumPy's default does.
public struct LatencySummary: Equatable {
    public let count: Int
    public let meanMs: Double, minMs: Double, maxMs: Double
    public let p50Ms: Double, p90Ms: Double, p95Ms: Double, p99Ms: Double

    public init(samplesMs: [Double]) {
        precondition(!samplesMs.isEmpty, "no latency samples to summarise")
        let s = samplesMs.sorted()
        count = s.count
        meanMs = s.reduce(0, +) / Double(s.count)
        minMs = s[0]; maxMs = s[s.count - 1]
        p50Ms = Self.percentile(s, 50); p90Ms = Self.percentile(s, 90)
        p95Ms = Self.percentile(s, 95); p99Ms = Self.percentile(s, 99)
    }

    /// `sorted` ascending, q in 0...100: `numpy.percentile(samples, q)`.
    public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        precondition(!sorted.isEmpty && (0...100).contains(q), "percentile needs samples and q in [0, 100]")
        let rank = q / 100 * Double(sorted.count - 1)
        let lo = Int(rank.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (rank - Double(lo)) * (sorted[hi] - sorted[lo])
    }
}

public enum Stage: Int, CaseIterable {
    case pre, inference, post
    public var label: String { ["pre", "inference", "post"][rawValue] }
}

/// Per-stage latency of the last `capacity` frames for the live overlay (pre = crop + normalise, inference = CoreML
/// prediction, post = decoding + smoothing).
public struct RollingLatency {
    private let capacity: Int
    private var samples: [[Double]]
    private var next = 0
    public private(set) var size = 0

    public init(capacity: Int = 60) {
        precondition(capacity >= 1, "capacity must be >= 1")
        self.capacity = capacity
        samples = Array(repeating: Array(repeating: 0, count: capacity), count: Stage.allCases.count)
    }

    public mutating func add(preMs: Double, inferenceMs: Double, postMs: Double) {
        samples[Stage.pre.rawValue][next] = preMs
        samples[Stage.inference.rawValue][next] = inferenceMs
        samples[Stage.post.rawValue][next] = postMs
        next = (next + 1) % capacity
        size = min(size + 1, capacity)
    }

    public func summary(_ stage: Stage) -> LatencySummary? {
        size == 0 ? nil : LatencySummary(samplesMs: Array(samples[stage.rawValue][0..<size]))
    }

    /// e.g. `pre 1.2 · inference 4.8 · post 0.1 ms (p50 of 60)`, the same text as the Android overlay.
    public var overlayText: String {
        guard size > 0 else { return "no frames yet" }
        let parts = Stage.allCases.map { "\($0.label) \(String(format: "%.1f", summary($0)!.p50Ms))" }
        return parts.joined(separator: " · ") + " ms (p50 of \(size))"
    }
}
