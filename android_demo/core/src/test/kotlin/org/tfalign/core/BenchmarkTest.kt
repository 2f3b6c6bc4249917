package org.tfalign.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.ByteArrayInputStream
import java.io.File

class BenchmarkTest {
    /** A clock advanced only by the fake sessions: each invoke takes `cost` ms, opening takes 7 ms. */
    private var nowNs = 0L

    private inner class FakeSession(private val costMs: Double) : BenchmarkSession {
        var invokes = 0
        var closed = false
        override fun invoke() { invokes++; nowNs += (costMs * 1e6).toLong() }
        override fun close() { closed = true }
    }

    private val opened = ArrayList<FakeSession>()

    private fun openFake(c: RuntimeConfig): BenchmarkSession {
        if (c.delegate == "gpu") throw IllegalStateException("GPU delegate not supported on this device")
        nowNs += 7_000_000L
        return FakeSession(if (c.threads == 4) 2.0 else 5.0).also { opened.add(it) }
    }

    private fun runPlan(): Pair<List<BenchmarkResult>, List<BenchmarkFailure>> {
        val plan = BenchmarkPlan.grid(listOf("xnnpack", "gpu", "nnapi"), listOf(1, 4), warmupRuns = 3, runs = 20)
        return BenchmarkRunner { nowNs }.run(plan, ::openFake)
    }

    @Test
    fun gridExpandsThreadsForCpuOnly() {
        val plan = BenchmarkPlan.grid(listOf("xnnpack", "gpu", "nnapi"), listOf(1, 4), 3, 20)
        assertEquals(listOf(RuntimeConfig("xnnpack", 1), RuntimeConfig("xnnpack", 4), RuntimeConfig("gpu", null),
                RuntimeConfig("nnapi", null)), plan.configs)
    }

    @Test
    fun measuresEveryConfigAndSkipsFailingDelegates() {
        val (results, failures) = runPlan()
        assertEquals(3, results.size)
        assertEquals(listOf("gpu"), failures.map { it.config.delegate })
        assertTrue(failures[0].error.contains("GPU delegate not supported"))
        val fast = results.first { it.config.threads == 4 }
        assertEquals(7.0, fast.initMs, 1e-9)
        assertEquals(2.0, fast.summary.p50Ms, 1e-9)
        assertEquals(20, fast.samplesMs.size)
        // first + warm-up + timed runs, then closed
        assertEquals(listOf(24, 24, 24), opened.map { it.invokes })
        assertTrue(opened.all { it.closed })
    }

    @Test
    fun reportFollowsTheSchemaFieldNames() {
        val (results, failures) = runPlan()
        val sha = Sha256.of(ByteArrayInputStream("model".toByteArray()))
        assertEquals("9372c470eeadd5ecd9c3c74c2b3cb633f8e2f2fad799250a0f70d652b6b825e4", sha)
        val report = BenchmarkReport(DeviceInfo("Pixel 6", "Android 14 (API 34)", "Google", "Tensor", "arm64-v8a", 8),
                ModelInfo("face.tflite", sha, 5L, "face.json"), results, failures, runtimeVersion = "1.4.0",
                createdIso = "2026-11-21T07:00:00Z")
        val text = report.toJson()
        @Suppress("UNCHECKED_CAST")
        val m = Json.parse(text) as Map<String, Any?>
        assertEquals(1L, m["format_version"])
        @Suppress("UNCHECKED_CAST")
        val r0 = (m["results"] as List<Map<String, Any?>>)[0]
        assertEquals("xnnpack", r0["delegate"])
        assertEquals(1L, r0["threads"])
        assertEquals(5.0, r0["p50_ms"] as Double, 1e-9)
        assertEquals(7.0, r0["init_ms"] as Double, 1e-9)
        // pytest validates this file against schemas/benchmark.schema.json
        System.getProperty("tfalign.benchmarkOut")?.let { File(it).writeText(text) }
    }

    @Test(expected = IllegalArgumentException::class)
    fun reportNeedsOneResult() {
        BenchmarkReport(DeviceInfo("x", "y"), ModelInfo("m", "0".repeat(64), null, null), emptyList())
    }

    @Test(expected = IllegalArgumentException::class)
    fun unknownDelegateIsRefused() {
        RuntimeConfig("tpu", 1)
    }
}
