package org.tfalign.demo.ui

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.util.AttributeSet
import android.view.View
import java.util.Locale
import org.tfalign.demo.camera.FrameResult

/**
 * Draws the face box, the landmarks and the latency line over the camera preview. Frame pixels map to the view
 * the way PreviewView's default FILL_CENTER scale does; the front camera preview is mirrored, so are the points.
 */
class OverlayView(context: Context, attrs: AttributeSet?) : View(context, attrs) {
    @Volatile private var result: FrameResult? = null
    var mirrored = true

    private val pointPaint = Paint(Paint.ANTI_ALIAS_FLAG).apply { color = Color.GREEN; style = Paint.Style.FILL }
    private val boxPaint = Paint(Paint.ANTI_ALIAS_FLAG).apply {
        color = Color.YELLOW; style = Paint.Style.STROKE; strokeWidth = 3f
    }
    private val textPaint = Paint(Paint.ANTI_ALIAS_FLAG).apply {
        color = Color.WHITE; textSize = 36f; setShadowLayer(4f, 0f, 0f, Color.BLACK)
    }

    fun show(r: FrameResult) {
        result = r
        postInvalidate()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        val r = result ?: return
        if (r.width > 0 && r.height > 0) {
            val scale = maxOf(width.toFloat() / r.width, height.toFloat() / r.height)
            val dx = (width - r.width * scale) / 2f
            val dy = (height - r.height * scale) / 2f
            // Pixel centres are at integer coordinates: pixel x covers [x - 0.5, x + 0.5] of the frame.
            fun vx(x: Double): Float {
                val v = ((x + 0.5) * scale + dx).toFloat()
                return if (mirrored) width - v else v
            }
            fun vy(y: Double) = ((y + 0.5) * scale + dy).toFloat()
            r.box?.let { b ->
                val l = vx(b.x - 0.5)
                val rr = vx(b.x + b.w - 0.5)
                canvas.drawRect(minOf(l, rr), vy(b.y - 0.5), maxOf(l, rr), vy(b.y + b.h - 0.5), boxPaint)
            }
            r.points?.let { p ->
                val radius = maxOf(3f, width / 200f)
                for (k in 0 until p.size / 2) canvas.drawCircle(vx(p[2 * k]), vy(p[2 * k + 1]), radius, pointPaint)
            }
        }
        canvas.drawText(r.latencyText, 24f, 60f, textPaint)
        canvas.drawText(r.error ?: String.format(Locale.ROOT, "detect %.1f ms", r.detectMs), 24f, 104f, textPaint)
    }
}
