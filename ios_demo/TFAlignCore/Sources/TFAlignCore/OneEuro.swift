import Foundation

/// One-euro parameters; the defaults are the shared ones in tests/golden/one_euro.json.
public struct OneEuroParams: Equatable {
    public let minCutoff: Double, beta: Double, dCutoff: Double

    public init(minCutoff: Double = 0.05, beta: Double = 80, dCutoff: Double = 1) {
        precondition(minCutoff > 0 && dCutoff > 0 && beta >= 0,
                     "one-euro parameters must have minCutoff > 0, dCutoff > 0, beta >= 0")
        self.minCutoff = minCutoff; self.beta = beta; self.dCutoff = dCutoff
    }
}

/// Casiez et al., "1€ Filter" (CHI 2012). As in the authors' C++/Java code and MediaPipe, the derivative is taken
/// against the previous raw value and multiplied by `valueScale` (1 / face size). Same math as
/// tests/app_reference.py and android_demo/core; all three are checked against tests/golden/one_euro.json.
public struct OneEuroFilter {
    public let params: OneEuroParams
    private var initialized = false
    private var tPrev = 0.0, xPrevRaw = 0.0, xHat = 0.0, dxHat = 0.0

    public init(params: OneEuroParams = OneEuroParams()) { self.params = params }

    public mutating func reset() { initialized = false }

    /// A timestamp that does not increase returns the last output unchanged.
    public mutating func filter(t: Double, x: Double, valueScale: Double = 1) -> Double {
        if !initialized {
            initialized = true
            tPrev = t; xPrevRaw = x; xHat = x; dxHat = 0
            return x
        }
        let dt = t - tPrev
        if dt <= 0 { return xHat }
        let dx = (x - xPrevRaw) * valueScale / dt
        dxHat += Self.alpha(params.dCutoff, dt) * (dx - dxHat)
        let cutoff = params.minCutoff + params.beta * abs(dxHat)
        xHat += Self.alpha(cutoff, dt) * (x - xHat)
        tPrev = t; xPrevRaw = x
        return xHat
    }

    private static func alpha(_ cutoff: Double, _ dt: Double) -> Double {
        let tau = 1 / (2 * Double.pi * cutoff)
        return 1 / (1 + tau / dt)
    }
}

/// One filter per coordinate; value scale = 1 / MediaPipe's object scale (mean of the raw points' box sides).
/// Call `reset` when the face is lost.
public struct LandmarkSmoother {
    private let params: OneEuroParams
    private var filters: [OneEuroFilter] = []

    public init(params: OneEuroParams = OneEuroParams()) { self.params = params }

    public mutating func reset() {
        for k in filters.indices { filters[k].reset() }
    }

    public mutating func smooth(t: Double, points: [Double]) -> [Double] {
        if filters.count != points.count { filters = Array(repeating: OneEuroFilter(params: params), count: points.count) }
        let scale = Self.objectScale(points)
        let valueScale = scale > 0 ? 1 / scale : 1
        var out = points
        for k in points.indices { out[k] = filters[k].filter(t: t, x: points[k], valueScale: valueScale) }
        return out
    }

    public static func objectScale(_ points: [Double]) -> Double {
        guard points.count >= 2 else { return 0 }
        let xs = stride(from: 0, to: points.count - 1, by: 2).map { points[$0] }
        let ys = stride(from: 1, to: points.count, by: 2).map { points[$0] }
        return 0.5 * ((xs.max()! - xs.min()!) + (ys.max()! - ys.min()!))
    }
}
