package org.tfalign.demo.camera

import android.graphics.Bitmap
import com.google.android.gms.tasks.Tasks
import com.google.mlkit.vision.common.InputImage
import com.google.mlkit.vision.face.FaceDetection
import com.google.mlkit.vision.face.FaceDetectorOptions
import org.tfalign.core.FaceBox
import java.io.Closeable

/**
 * ML Kit's bundled face detector (runs offline). Its box is not the tight landmark box the contract's crop is
 * defined on; [org.tfalign.core.BoxCalibration] maps one to the other (see README, "Detector calibration").
 */
class FaceBoxDetector : Closeable {
    private val detector = FaceDetection.getClient(
            FaceDetectorOptions.Builder()
                    .setPerformanceMode(FaceDetectorOptions.PERFORMANCE_MODE_FAST)
                    .setMinFaceSize(0.15f)
                    .build())

    /** The largest face in an upright [bitmap], or null. Blocks: call it on the analysis thread. */
    fun largestFace(bitmap: Bitmap): FaceBox? {
        val faces = Tasks.await(detector.process(InputImage.fromBitmap(bitmap, 0)))
        val face = faces.maxByOrNull { it.boundingBox.width() * it.boundingBox.height() } ?: return null
        val r = face.boundingBox
        if (r.width() <= 0 || r.height() <= 0) return null
        return FaceBox(r.left.toDouble(), r.top.toDouble(), r.width().toDouble(), r.height().toDouble())
    }

    override fun close() = detector.close()
}
