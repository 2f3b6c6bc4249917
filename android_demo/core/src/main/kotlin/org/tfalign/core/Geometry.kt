package org.tfalign.core

/** An axis-aligned face box in image pixels (pixel centres at integer coordinates). */
data class FaceBox(val x: Double, val y: Double, val w: Double, val h: Double) {
    init {
        require(w > 0 && h > 0) { "face box must have positive width and height, got w=$w h=$h" }
    }

    val centerX: Double get() = x + 0.5 * w
    val centerY: Double get() = y + 0.5 * h
}

/**
 * Maps a detector's box to the box the model was trained on (the tight box of the scheme's points): centre moves
 * by (shiftX, shiftY) × the box's larger side, and both sides are multiplied by [scale]. Measure it once per
 * detector on labelled faces; the identity is the default.
 */
data class BoxCalibration(val scale: Double = 1.0, val shiftX: Double = 0.0, val shiftY: Double = 0.0) {
    fun apply(box: FaceBox): FaceBox {
        val size = maxOf(box.w, box.h)
        val cx = box.centerX + shiftX * size
        val cy = box.centerY + shiftY * size
        val w = box.w * scale
        val h = box.h * scale
        return FaceBox(cx - 0.5 * w, cy - 0.5 * h, w, h)
    }
}

/**
 * The square crop in image pixels: centre (cx, cy) and side. Crop pixel j of an output W pixels wide has its centre
 * at image x = cx + (j + 0.5 - W / 2) × side / W, the same mapping as `tfalign.data.geometry`.
 */
data class CropWindow(val cx: Double, val cy: Double, val side: Double) {
    companion object {
        fun from(box: FaceBox, crop: CropSpec): CropWindow {
            val side = crop.scale * maxOf(box.w, box.h)
            return CropWindow(box.centerX + crop.shiftX * side, box.centerY + crop.shiftY * side, side)
        }
    }

    /** Image x of the centre of crop column [j] for an output [width] pixels wide. */
    fun sourceX(j: Int, width: Int): Double = cx + (j + 0.5 - 0.5 * width) * side / width

    fun sourceY(i: Int, height: Int): Double = cy + (i + 0.5 - 0.5 * height) * side / height

    /** Normalised crop coordinate (per [origin]) → image pixel coordinate. */
    fun imageX(u: Double, width: Int, origin: Origin): Double =
            cx + ((if (origin == Origin.CENTER) u + 0.5 / width else u) - 0.5) * side

    fun imageY(v: Double, height: Int, origin: Origin): Double =
            cy + ((if (origin == Origin.CENTER) v + 0.5 / height else v) - 0.5) * side
}
