package org.tfalign.demo

import android.Manifest
import android.content.pm.PackageManager
import android.os.Bundle
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.CheckBox
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import org.tfalign.core.RuntimeConfig
import org.tfalign.demo.bench.BenchmarkController
import org.tfalign.demo.camera.FaceBoxDetector
import org.tfalign.demo.camera.FrameAnalyzer
import org.tfalign.demo.ml.InterpreterFactory
import org.tfalign.demo.ml.LandmarkEstimator
import org.tfalign.demo.ml.ModelCatalog
import org.tfalign.demo.ml.ModelEntry
import org.tfalign.demo.ui.OverlayView
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/** Live landmarks on the front camera with a model / delegate / thread picker, and benchmark mode. */
class MainActivity : AppCompatActivity() {
    private lateinit var preview: PreviewView
    private lateinit var overlay: OverlayView
    private lateinit var status: TextView
    private lateinit var modelPicker: Spinner
    private lateinit var delegatePicker: Spinner
    private lateinit var threadsPicker: Spinner
    private lateinit var detector: FaceBoxDetector
    private lateinit var analyzer: FrameAnalyzer
    // One thread owns the estimator: frames, model swaps and closing never overlap.
    private val analysisExecutor: ExecutorService = Executors.newSingleThreadExecutor()
    private val benchmarkExecutor: ExecutorService = Executors.newSingleThreadExecutor()
    private var models: List<ModelEntry> = emptyList()

    private val permission = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) {
            startCamera()
        } else {
            status.text = getString(R.string.camera_permission)
        }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        preview = findViewById(R.id.preview)
        overlay = findViewById(R.id.overlay)
        status = findViewById(R.id.status)
        modelPicker = findViewById(R.id.model_picker)
        delegatePicker = findViewById(R.id.delegate_picker)
        threadsPicker = findViewById(R.id.threads_picker)
        detector = FaceBoxDetector()
        analyzer = FrameAnalyzer(detector) { overlay.show(it) }

        val (entries, problems) = ModelCatalog.list(assets)
        models = entries
        status.text = when {
            problems.isNotEmpty() -> problems.joinToString("\n")
            entries.isEmpty() -> getString(R.string.no_models)
            else -> ""
        }
        modelPicker.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, entries)
        delegatePicker.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item,
                InterpreterFactory.DELEGATES)
        threadsPicker.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item, listOf(1, 2, 4, 8))
        val reload = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) = reloadEstimator()
            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
        listOf(modelPicker, delegatePicker, threadsPicker).forEach { it.onItemSelectedListener = reload }
        findViewById<CheckBox>(R.id.smoothing).setOnCheckedChangeListener { _, on -> analyzer.smoothing = on }
        findViewById<Button>(R.id.benchmark).setOnClickListener {
            (modelPicker.selectedItem as? ModelEntry)?.let { startBenchmark(it, BenchmarkController.Options()) }
        }

        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            permission.launch(Manifest.permission.CAMERA)
        }
        runBenchmarkFromIntent()
    }

    private fun runBenchmarkFromIntent() {
        val request = try {
            BenchmarkController.fromIntent(intent)
        } catch (e: IllegalArgumentException) {
            status.text = e.message
            return
        } ?: return
        val entry = models.firstOrNull { it.name == request.first }
        if (entry == null) {
            status.text = "benchmark: no model '${request.first}' in assets/models; have ${models.map { it.name }}"
            return
        }
        startBenchmark(entry, request.second)
    }

    private fun selectedConfig(): RuntimeConfig {
        val delegate = delegatePicker.selectedItem as String
        val threads = threadsPicker.selectedItem as Int
        return RuntimeConfig(delegate, if (delegate == "xnnpack" || delegate == "cpu") threads else null)
    }

    private fun reloadEstimator() {
        val entry = modelPicker.selectedItem as? ModelEntry ?: return
        val config = selectedConfig()
        analysisExecutor.execute {
            val old = analyzer.estimator
            analyzer.estimator = null
            old?.close()
            analyzer.estimator = try {
                LandmarkEstimator(entry, ModelCatalog.map(assets, entry), config)
            } catch (e: Exception) {
                runOnUiThread { status.text = "${entry.name} on ${config.delegate}: ${e.message}" }
                null
            }
        }
    }

    private fun startBenchmark(entry: ModelEntry, options: BenchmarkController.Options) {
        benchmarkExecutor.execute {
            val message = try {
                val file = BenchmarkController(this).run(entry, options) { p -> runOnUiThread { status.text = p } }
                "benchmark written: ${file.absolutePath}"
            } catch (e: Exception) {
                "benchmark failed: ${e.message}"
            }
            runOnUiThread { status.text = message }
        }
    }

    private fun startCamera() {
        val future = ProcessCameraProvider.getInstance(this)
        future.addListener({
            val provider = future.get()
            val previewUse = Preview.Builder().build().also { it.setSurfaceProvider(preview.surfaceProvider) }
            val analysis = ImageAnalysis.Builder()
                    .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                    .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                    .build()
                    .also { it.setAnalyzer(analysisExecutor, analyzer) }
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_FRONT_CAMERA, previewUse, analysis)
            overlay.mirrored = true
        }, ContextCompat.getMainExecutor(this))
    }

    override fun onDestroy() {
        super.onDestroy()
        analysisExecutor.execute {
            analyzer.estimator?.close()
            analyzer.estimator = null
            detector.close()
        }
        analysisExecutor.shutdown()
        benchmarkExecutor.shutdown()
    }
}
