package org.tfalign.demo.bench

import android.content.Context
import android.content.Intent
import android.os.Build
import android.util.Log
import org.tensorflow.lite.TensorFlowLite
import org.tfalign.core.AtomicFiles
import org.tfalign.core.BenchmarkPlan
import org.tfalign.core.BenchmarkReport
import org.tfalign.core.BenchmarkRunner
import org.tfalign.core.BenchmarkSession
import org.tfalign.core.DeviceInfo
import org.tfalign.core.ModelInfo
import org.tfalign.core.RuntimeConfig
import org.tfalign.core.Sha256
import org.tfalign.demo.ml.InterpreterFactory
import org.tfalign.demo.ml.LandmarkEstimator
import org.tfalign.demo.ml.ModelCatalog
import org.tfalign.demo.ml.ModelEntry
import java.io.File
import java.time.Instant
import java.time.temporal.ChronoUnit

/**
 * Benchmark mode: a fixed number of invocations per delegate × thread count (core [BenchmarkRunner]), written as
 * the JSON of schemas/benchmark.schema.json that `python -m tfalign.profile --import` reads.
 *
 * Started from the Benchmark button (defaults below) or over adb:
 * `adb shell am start -n org.tfalign.demo/.MainActivity --es benchmark MODEL [--es delegates xnnpack,gpu]
 *  [--es threads 1,4] [--ei runs 100] [--ei warmup 10]`; the file path is logged under the tag [TAG].
 */
class BenchmarkController(private val context: Context) {
    class Options(val delegates: List<String> = InterpreterFactory.DELEGATES, val threads: List<Int> = listOf(1, 2, 4),
                  val warmup: Int = 10, val runs: Int = 100)

    companion object {
        const val TAG = "tfalign-benchmark"

        /** Options from the adb intent extras, or null when the intent does not ask for a benchmark. */
        fun fromIntent(intent: Intent?): Pair<String, Options>? {
            val model = intent?.getStringExtra("benchmark") ?: return null
            val d = Options()
            val delegates = intent.getStringExtra("delegates")?.split(",")?.map { it.trim() } ?: d.delegates
            val threads = intent.getStringExtra("threads")?.split(",")?.map {
                it.trim().toIntOrNull() ?: throw IllegalArgumentException("threads: '$it' is not an integer")
            } ?: d.threads
            return Pair(model, Options(delegates, threads, intent.getIntExtra("warmup", d.warmup),
                    intent.getIntExtra("runs", d.runs)))
        }
    }

    /** Runs on the calling (background) thread and returns the report file. */
    fun run(entry: ModelEntry, options: Options, progress: (String) -> Unit): File {
        val plan = BenchmarkPlan.grid(options.delegates, options.threads, options.warmup, options.runs)
        val (results, failures) = BenchmarkRunner().run(plan, { config -> openSession(entry, config) }) { done, total, c ->
            progress("benchmark $done/$total: ${c.delegate}${c.threads?.let { " × $it" } ?: ""}")
        }
        failures.forEach { Log.w(TAG, "${it.config.delegate} threads=${it.config.threads}: ${it.error}") }
        val report = BenchmarkReport(deviceInfo(), modelInfo(entry), results, failures, runtime = "litert",
                runtimeVersion = TensorFlowLite.runtimeVersion(),
                createdIso = Instant.now().truncatedTo(ChronoUnit.SECONDS).toString())
        val dir = context.getExternalFilesDir("benchmarks") ?: File(context.filesDir, "benchmarks")
        val stamp = Instant.now().toString().replace(Regex("[^0-9]"), "").take(14)
        val file = File(dir, "${entry.name}-${Build.MODEL.replace(Regex("[^A-Za-z0-9]+"), "_")}-$stamp.json")
        AtomicFiles.write(file, report.toJson())
        Log.i(TAG, "wrote ${file.absolutePath}")
        return file
    }

    /** init_ms = mapping + interpreter + delegate + allocation. The input stays zero: latency does not depend on it. */
    private fun openSession(entry: ModelEntry, config: RuntimeConfig): BenchmarkSession {
        val estimator = LandmarkEstimator(entry, ModelCatalog.map(context.assets, entry), config)
        return object : BenchmarkSession {
            override fun invoke() = estimator.invoke()
            override fun close() = estimator.close()
        }
    }

    private fun deviceInfo(): DeviceInfo {
        val soc = if (Build.VERSION.SDK_INT >= 31) "${Build.SOC_MANUFACTURER} ${Build.SOC_MODEL}".trim() else Build.HARDWARE
        return DeviceInfo(model = Build.MODEL, os = "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT})",
                manufacturer = Build.MANUFACTURER, soc = soc, abi = Build.SUPPORTED_ABIS.firstOrNull(),
                cpuCores = Runtime.getRuntime().availableProcessors())
    }

    private fun modelInfo(entry: ModelEntry): ModelInfo {
        val sha = context.assets.open(entry.modelAsset).use { Sha256.of(it) }
        val size = context.assets.openFd(entry.modelAsset).use { it.length }
        return ModelInfo(entry.modelAsset.substringAfterLast('/'), sha, size, entry.contractAsset.substringAfterLast('/'))
    }
}
