package org.tfalign.core

import java.nio.ByteBuffer

/**
 * Crops, resizes and normalises a frame into the model's input tensor, exactly as the contract describes.
 *
 * Frames are packed ARGB ints (Android's `Bitmap.getPixels` layout), upright. Sampling is bilinear (or nearest)
 * with pixel centres at integer coordinates; pixels outside the frame read as 0, like OpenCV's default
 * BORDER_CONSTANT. GRAY inputs use the ITU-R 601 luma weights OpenCV's RGB2GRAY uses.
 */
class InputEncoder(private val input: InputSpec, private val interpolation: Interpolation) {
    constructor(contract: ModelContract) : this(contract.input, contract.crop.interpolation)

    /** Bytes the encoded tensor occupies (allocate a direct buffer of this size in native order). */
    val byteSize: Int get() = input.byteSize

    private val rgb = DoubleArray(3)

    /** Writes the tensor for [window] of the [width] × [height] frame [argb] into [out] from its position. */
    fun encode(argb: IntArray, width: Int, height: Int, window: CropWindow, out: ByteBuffer) {
        require(argb.size >= width * height) { "frame has ${argb.size} pixels, expected $width x $height" }
        require(out.remaining() >= byteSize) { "input buffer has ${out.remaining()} bytes left, model needs $byteSize" }
        val h = input.height
        val w = input.width
        for (i in 0 until h) {
            val sy = window.sourceY(i, h)
            for (j in 0 until w) {
                sample(argb, width, height, window.sourceX(j, w), sy)
                if (input.gray) {
                    put(out, 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2], 0)
                } else {
                    for (c in 0 until 3) put(out, rgb[c], c)
                }
            }
        }
    }

    private fun put(out: ByteBuffer, pixel: Double, channel: Int) {
        val x = (pixel - input.mean[channel]) / input.std[channel]
        if (!input.dtype.quantized) {
            out.putFloat(x.toFloat())
        } else {
            val q = (Math.rint(x / input.scale) + input.zeroPoint).coerceIn(
                    input.dtype.minQ.toDouble(), input.dtype.maxQ.toDouble())
            out.put(q.toInt().toByte())
        }
    }

    private fun sample(argb: IntArray, width: Int, height: Int, x: Double, y: Double) {
        if (interpolation == Interpolation.NEAREST) {
            rgb.fill(0.0)
            accumulate(argb, width, height, Math.floor(x + 0.5).toInt(), Math.floor(y + 0.5).toInt(), 1.0)
            return
        }
        val x0 = Math.floor(x).toInt()
        val y0 = Math.floor(y).toInt()
        val fx = x - x0
        val fy = y - y0
        rgb.fill(0.0)
        accumulate(argb, width, height, x0, y0, (1 - fx) * (1 - fy))
        accumulate(argb, width, height, x0 + 1, y0, fx * (1 - fy))
        accumulate(argb, width, height, x0, y0 + 1, (1 - fx) * fy)
        accumulate(argb, width, height, x0 + 1, y0 + 1, fx * fy)
    }

    private fun accumulate(argb: IntArray, width: Int, height: Int, ix: Int, iy: Int, weight: Double) {
        if (ix < 0 || iy < 0 || ix >= width || iy >= height || weight == 0.0) return
        val p = argb[iy * width + ix]
        rgb[0] += weight * ((p shr 16) and 0xFF)
        rgb[1] += weight * ((p shr 8) and 0xFF)
        rgb[2] += weight * (p and 0xFF)
    }
}
