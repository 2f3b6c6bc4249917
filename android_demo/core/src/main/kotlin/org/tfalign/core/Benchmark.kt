package org.tfalign.core

import java.io.File
import java.io.InputStream
import java.security.MessageDigest
import java.util.Locale

/** One runtime configuration: a delegate from schemas/benchmark.schema.json, a thread count, CoreML compute units. */
data class RuntimeConfig(val delegate: String, val threads: Int?, val computeUnits: String? = null) {
    init {
        require(delegate in DELEGATES) { "delegate \"$delegate\" is not one of ${DELEGATES.joinToString()}" }
        require(threads == null || threads >= 1) { "threads must be >= 1, got $threads" }
    }

    companion object {
        val DELEGATES = listOf("cpu", "xnnpack", "gpu", "nnapi", "npu", "coreml", "hexagon", "qnn", "other")
    }
}

/** The model under test, opened for one configuration. Creating it is what `init_ms` measures. */
interface BenchmarkSession : AutoCloseable {
    /** One inference on fixed input, excluding pre- and post-processing. */
    fun invoke()
}

class BenchmarkPlan(val configs: List<RuntimeConfig>, val warmupRuns: Int = 10, val runs: Int = 100) {
    init {
        require(configs.isNotEmpty()) { "benchmark plan has no configurations" }
        require(warmupRuns >= 0) { "warmup runs must be >= 0, got $warmupRuns" }
        require(runs >= 1) { "runs must be >= 1, got $runs" }
    }

    companion object {
        /** Every delegate × every thread count; thread counts only apply to the CPU delegates. */
        fun grid(delegates: List<String>, threads: List<Int>, warmupRuns: Int, runs: Int): BenchmarkPlan {
            val configs = delegates.flatMap { d ->
                if (d == "cpu" || d == "xnnpack") threads.map { RuntimeConfig(d, it) } else listOf(RuntimeConfig(d, null))
            }
            return BenchmarkPlan(configs, warmupRuns, runs)
        }
    }
}

class BenchmarkResult(
    val config: RuntimeConfig, val initMs: Double, val firstMs: Double, val samplesMs: DoubleArray,
    val warmupRuns: Int
) {
    val summary: LatencySummary = LatencySummary.of(samplesMs)
}

/** A configuration that could not run (e.g. no GPU delegate on this phone); reported, not fatal. */
class BenchmarkFailure(val config: RuntimeConfig, val error: String)

/**
 * Runs a fixed number of invocations per configuration. The clock is injectable so tests are deterministic;
 * on a phone it is `System.nanoTime`.
 */
class BenchmarkRunner(private val clockNanos: () -> Long = { System.nanoTime() }) {
    fun run(
        plan: BenchmarkPlan,
        openSession: (RuntimeConfig) -> BenchmarkSession,
        progress: (done: Int, total: Int, config: RuntimeConfig) -> Unit = { _, _, _ -> }
    ): Pair<List<BenchmarkResult>, List<BenchmarkFailure>> {
        val results = ArrayList<BenchmarkResult>()
        val failures = ArrayList<BenchmarkFailure>()
        plan.configs.forEachIndexed { i, config ->
            progress(i, plan.configs.size, config)
            try {
                results.add(runOne(plan, config, openSession))
            } catch (e: Exception) {
                failures.add(BenchmarkFailure(config, e.message ?: e.javaClass.simpleName))
            }
        }
        progress(plan.configs.size, plan.configs.size, plan.configs.last())
        return Pair(results, failures)
    }

    private fun ms(t0: Long) = (clockNanos() - t0) / 1e6

    private fun runOne(plan: BenchmarkPlan, config: RuntimeConfig, openSession: (RuntimeConfig) -> BenchmarkSession):
            BenchmarkResult {
        var t0 = clockNanos()
        val session = openSession(config)
        val initMs = ms(t0)
        // try/finally rather than `use`: AutoCloseable.use needs kotlin-stdlib-jdk7, which a bare kotlinc lacks.
        try {
            t0 = clockNanos()
            session.invoke()
            val firstMs = ms(t0)
            repeat(plan.warmupRuns) { session.invoke() }
            val samples = DoubleArray(plan.runs)
            for (k in 0 until plan.runs) {
                t0 = clockNanos()
                session.invoke()
                samples[k] = ms(t0)
            }
            return BenchmarkResult(config, initMs, firstMs, samples, plan.warmupRuns)
        } finally {
            session.close()
        }
    }
}

class DeviceInfo(
    val model: String, val os: String, val manufacturer: String? = null, val soc: String? = null,
    val abi: String? = null, val cpuCores: Int? = null
)

class ModelInfo(val file: String, val sha256: String, val sizeBytes: Long?, val contract: String?) {
    init {
        require(file.isNotEmpty()) { "model file name is empty" }
        require(Regex("^[0-9a-f]{64}$").matches(sha256)) { "sha256 must be 64 lowercase hex digits, got \"$sha256\"" }
    }
}

object Sha256 {
    fun of(stream: InputStream): String {
        val md = MessageDigest.getInstance("SHA-256")
        val buf = ByteArray(1 shl 16)
        while (true) {
            val n = stream.read(buf)
            if (n < 0) break
            md.update(buf, 0, n)
        }
        return md.digest().joinToString("") { String.format(Locale.ROOT, "%02x", it) }
    }

    fun of(file: File): String = file.inputStream().use { of(it) }
}

/** The benchmark JSON of schemas/benchmark.schema.json, which `python -m tfalign.profile --import` reads. */
class BenchmarkReport(
    val device: DeviceInfo, val model: ModelInfo, val results: List<BenchmarkResult>,
    val failures: List<BenchmarkFailure> = emptyList(), val runtime: String = "litert",
    val runtimeVersion: String? = null, val toolName: String = "tfalign-android", val toolVersion: String = "0.1.0",
    val createdIso: String? = null
) {
    init {
        require(results.isNotEmpty()) {
            "no configuration ran; failures: " + failures.joinToString("; ") { "${it.config.delegate}: ${it.error}" }
        }
    }

    fun toMap(): Map<String, Any?> {
        val root = LinkedHashMap<String, Any?>()
        root["format_version"] = 1
        createdIso?.let { root["created"] = it }
        root["tool"] = linkedMapOf("name" to toolName, "version" to toolVersion)
        val dev = LinkedHashMap<String, Any?>()
        dev["model"] = device.model
        device.manufacturer?.let { dev["manufacturer"] = it }
        dev["soc"] = device.soc ?: ""
        dev["os"] = device.os
        device.abi?.let { dev["abi"] = it }
        device.cpuCores?.let { dev["cpu_cores"] = it }
        root["device"] = dev
        val mod = LinkedHashMap<String, Any?>()
        mod["file"] = model.file
        mod["sha256"] = model.sha256
        model.sizeBytes?.let { mod["size_bytes"] = it }
        model.contract?.let { mod["contract"] = it }
        root["model"] = mod
        root["results"] = results.map { r ->
            val s = r.summary
            val m = LinkedHashMap<String, Any?>()
            m["runtime"] = runtime
            runtimeVersion?.let { m["runtime_version"] = it }
            m["delegate"] = r.config.delegate
            r.config.computeUnits?.let { m["compute_units"] = it }
            m["threads"] = r.config.threads
            m["warmup_runs"] = r.warmupRuns
            m["runs"] = s.count
            m["init_ms"] = r.initMs
            m["first_ms"] = r.firstMs
            m["p50_ms"] = s.p50Ms
            m["p90_ms"] = s.p90Ms
            m["p95_ms"] = s.p95Ms
            m["p99_ms"] = s.p99Ms
            m["mean_ms"] = s.meanMs
            m["min_ms"] = s.minMs
            m["max_ms"] = s.maxMs
            m
        }
        if (failures.isNotEmpty()) {
            root["skipped"] = failures.map {
                linkedMapOf("delegate" to it.config.delegate, "threads" to it.config.threads, "error" to it.error)
            }
        }
        return root
    }

    fun toJson(): String = Json.write(toMap())
}
