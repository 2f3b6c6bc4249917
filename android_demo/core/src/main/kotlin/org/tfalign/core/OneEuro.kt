package org.tfalign.core

/** One-euro parameters; the defaults are the shared ones in tests/golden/one_euro.json. */
data class OneEuroParams(val minCutoff: Double = 0.05, val beta: Double = 80.0, val dCutoff: Double = 1.0) {
    init {
        require(minCutoff > 0 && dCutoff > 0 && beta >= 0) {
            "one-euro parameters must have minCutoff > 0, dCutoff > 0, beta >= 0; got $this"
        }
    }
}

/**
 * Casiez et al., "1€ Filter" (CHI 2012): a low-pass whose cutoff rises with speed, so a still face does not
 * jitter and a moving one does not lag. As in the authors' C++/Java code and MediaPipe, the derivative is taken
 * against the previous raw value; as in MediaPipe it is multiplied by `valueScale` (1 / face size) so the
 * parameters do not depend on how large the face is. The same math lives in tests/app_reference.py and
 * ios_demo/TFAlignCore; all three are checked against tests/golden/one_euro.json.
 */
class OneEuroFilter(val params: OneEuroParams = OneEuroParams()) {
    private var initialized = false
    private var tPrev = 0.0
    private var xPrevRaw = 0.0
    private var xHat = 0.0
    private var dxHat = 0.0

    fun reset() {
        initialized = false
    }

    /** Filters [x] observed at [t] seconds. A timestamp that does not increase returns the last output unchanged. */
    fun filter(t: Double, x: Double, valueScale: Double = 1.0): Double {
        if (!initialized) {
            initialized = true
            tPrev = t; xPrevRaw = x; xHat = x; dxHat = 0.0
            return x
        }
        val dt = t - tPrev
        if (dt <= 0.0) return xHat
        val dx = (x - xPrevRaw) * valueScale / dt
        dxHat += alpha(params.dCutoff, dt) * (dx - dxHat)
        val cutoff = params.minCutoff + params.beta * Math.abs(dxHat)
        xHat += alpha(cutoff, dt) * (x - xHat)
        tPrev = t; xPrevRaw = x
        return xHat
    }

    private fun alpha(cutoff: Double, dt: Double): Double {
        val tau = 1.0 / (2.0 * Math.PI * cutoff)
        return 1.0 / (1.0 + tau / dt)
    }
}

/**
 * One filter per coordinate of a landmark set; value scale = 1 / (mean of the raw points' box width and height),
 * MediaPipe's object scale. Call [reset] when the face is lost so the next face does not glide in from the old one.
 */
class LandmarkSmoother(private val params: OneEuroParams = OneEuroParams()) {
    private var filters: Array<OneEuroFilter> = emptyArray()

    fun reset() = filters.forEach { it.reset() }

    fun smooth(tSeconds: Double, points: DoubleArray, out: DoubleArray = DoubleArray(points.size)): DoubleArray {
        if (filters.size != points.size) filters = Array(points.size) { OneEuroFilter(params) }
        val scale = objectScale(points)
        val valueScale = if (scale > 0) 1.0 / scale else 1.0
        for (k in points.indices) out[k] = filters[k].filter(tSeconds, points[k], valueScale)
        return out
    }

    companion object {
        fun objectScale(points: DoubleArray): Double {
            if (points.size < 2) return 0.0
            var minX = Double.MAX_VALUE; var maxX = -Double.MAX_VALUE
            var minY = Double.MAX_VALUE; var maxY = -Double.MAX_VALUE
            for (p in 0 until points.size / 2) {
                minX = minOf(minX, points[2 * p]); maxX = maxOf(maxX, points[2 * p])
                minY = minOf(minY, points[2 * p + 1]); maxY = maxOf(maxY, points[2 * p + 1])
            }
            return 0.5 * ((maxX - minX) + (maxY - minY))
        }
    }
}
