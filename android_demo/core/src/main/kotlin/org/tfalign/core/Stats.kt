package org.tfalign.core

import java.util.Locale

/** Summary of latency samples; percentiles interpolate linearly between ranks, as NumPy's default does. */
class LatencySummary(
    val count: Int, val meanMs: Double, val minMs: Double, val maxMs: Double,
    val p50Ms: Double, val p90Ms: Double, val p95Ms: Double, val p99Ms: Double
) {
    companion object {
        fun of(samplesMs: DoubleArray): LatencySummary {
            require(samplesMs.isNotEmpty()) { "no latency samples to summarise" }
            val s = samplesMs.sortedArray()
            return LatencySummary(s.size, s.average(), s.first(), s.last(), percentile(s, 50.0),
                    percentile(s, 90.0), percentile(s, 95.0), percentile(s, 99.0))
        }

        /** [sorted] ascending; q in [0, 100]. Same as `numpy.percentile(samples, q)`. */
        fun percentile(sorted: DoubleArray, q: Double): Double {
            require(sorted.isNotEmpty()) { "no samples" }
            require(q in 0.0..100.0) { "percentile must be in [0, 100], got $q" }
            val rank = q / 100.0 * (sorted.size - 1)
            val lo = Math.floor(rank).toInt()
            val hi = minOf(lo + 1, sorted.size - 1)
            return sorted[lo] + (rank - lo) * (sorted[hi] - sorted[lo])
        }
    }
}

enum class Stage(val label: String) { PRE("pre"), INFERENCE("inference"), POST("post") }

/**
 * Per-stage latency of the last [capacity] frames, for the live overlay (pre-processing = detector box → input
 * tensor, inference = interpreter run, post-processing = decoding + smoothing). Not thread-safe: feed it from the
 * analysis thread and read a [snapshot] for the UI.
 */
class RollingLatency(private val capacity: Int = 60) {
    private val samples = Array(Stage.values().size) { DoubleArray(capacity) }
    private var next = 0
    var size = 0
        private set

    init {
        require(capacity >= 1) { "capacity must be >= 1, got $capacity" }
    }

    fun add(preMs: Double, inferenceMs: Double, postMs: Double) {
        samples[Stage.PRE.ordinal][next] = preMs
        samples[Stage.INFERENCE.ordinal][next] = inferenceMs
        samples[Stage.POST.ordinal][next] = postMs
        next = (next + 1) % capacity
        size = minOf(size + 1, capacity)
    }

    fun summary(stage: Stage): LatencySummary? =
            if (size == 0) null else LatencySummary.of(samples[stage.ordinal].copyOf(size))

    /** One line for the overlay, e.g. `pre 1.2 · inference 4.8 · post 0.1 ms (p50 of 60)`. */
    fun overlayText(): String {
        if (size == 0) return "no frames yet"
        val parts = Stage.values().map { "${it.label} ${String.format(Locale.ROOT, "%.1f", summary(it)!!.p50Ms)}" }
        return parts.joinToString(" · ") + " ms (p50 of $size)"
    }
}
