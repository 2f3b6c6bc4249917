package org.tfalign.demo.camera

import android.graphics.Bitmap
import android.graphics.Matrix
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import org.tfalign.core.BoxCalibration
import org.tfalign.core.FaceBox
import org.tfalign.core.LandmarkSmoother
import org.tfalign.core.RollingLatency
import org.tfalign.demo.ml.LandmarkEstimator

/** What the overlay draws for one frame; coordinates are pixels of the upright frame. */
class FrameResult(val width: Int, val height: Int, val box: FaceBox?, val points: DoubleArray?,
                  val detectMs: Double, val latencyText: String, val error: String? = null)

/**
 * Camera frame → upright bitmap → ML Kit face box → calibrated box → landmarks → one-euro smoothing.
 * Latency stages (core [RollingLatency]): pre = pixel copy + crop + normalise, inference = interpreter run,
 * post = decoding + smoothing. Face detection is reported on its own.
 */
class FrameAnalyzer(private val detector: FaceBoxDetector, private val onResult: (FrameResult) -> Unit) :
        ImageAnalysis.Analyzer {
    /** Swapped by the UI thread; the old one is closed on the analysis thread (see MainActivity). */
    @Volatile var estimator: LandmarkEstimator? = null
    @Volatile var smoothing = true
    @Volatile var calibration = BoxCalibration()
    val latency = RollingLatency(60)
    private val smoother = LandmarkSmoother()
    private var pixels = IntArray(0)
    private var lastEstimator: LandmarkEstimator? = null

    override fun analyze(image: ImageProxy) {
        try {
            val frame = upright(image.toBitmap(), image.imageInfo.rotationDegrees)
            val w = frame.width
            val h = frame.height
            val est = estimator
            if (est !== lastEstimator) {  // another model or delegate: its latencies and history do not carry over
                lastEstimator = est
                smoother.reset()
            }
            val t0 = System.nanoTime()
            val box = detector.largestFace(frame)
            val detectMs = (System.nanoTime() - t0) / 1e6
            if (box == null || est == null) {
                smoother.reset()
                onResult(FrameResult(w, h, box, null, detectMs, latency.overlayText()))
                return
            }
            val t1 = System.nanoTime()
            if (pixels.size != w * h) pixels = IntArray(w * h)
            frame.getPixels(pixels, 0, w, 0, 0, w, h)
            val copyMs = (System.nanoTime() - t1) / 1e6
            val e = est.estimate(pixels, w, h, calibration.apply(box))
            val t2 = System.nanoTime()
            val points = if (smoothing) smoother.smooth(image.imageInfo.timestamp / 1e9, e.points) else e.points
            val smoothMs = (System.nanoTime() - t2) / 1e6
            latency.add(copyMs + e.preMs, e.inferenceMs, e.postMs + smoothMs)
            onResult(FrameResult(w, h, box, points, detectMs, latency.overlayText()))
        } catch (e: Exception) {
            onResult(FrameResult(0, 0, null, null, 0.0, latency.overlayText(), e.message ?: e.javaClass.simpleName))
        } finally {
            image.close()
        }
    }

    private fun upright(bitmap: Bitmap, rotationDegrees: Int): Bitmap {
        if (rotationDegrees == 0) return bitmap
        val m = Matrix().apply { postRotate(rotationDegrees.toFloat()) }
        return Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, m, true)
    }
}
