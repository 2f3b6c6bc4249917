package org.tfalign.core

import java.nio.ByteBuffer

/**
 * Crops, resizes and normalises a frame into the model's input tensor, exactly as the contract describes.
 *
 * Frames are packed ARGB ints (Android's `Bitmap.getPixels` layout), upright. Sampling is bilinear with pixel
 * centres at integer coordinates and `crop.border` outside the frame, rounded to 0-255 like the uint8 crop that
 * `tfalign.data.geometry` makes with OpenCV (whose internal rounding differs from these exact weights by at most
 * one level on rare pixels). GRAY is BT.601 luma, rounded. Normalisation runs in float32 like NumPy's.
 */
class InputEncoder(private val input: InputSpec, private val border: Double) {
    constructor(contract: ModelContract) : this(contract.input, contract.crop.border)

    /** Bytes the encoded tensor occupies (allocate a direct buffer of this size in native order). */
    val byteSize: Int get() = input.byteSize

    private val rgb = DoubleArray(3)
    private val meanF = input.mean.toFloat()
    // NumPy's order of operations (tfalign.data.geometry.normalize): float32(1 / std) from a double division.
    private val invStdF = (1.0 / input.std).toFloat()
    private val scaleF = input.scale.toFloat()

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
                    put(out, Math.rint(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]).toFloat())
                } else {
                    for (c in 0 until 3) put(out, rgb[c].toFloat())
                }
            }
        }
    }

    private fun put(out: ByteBuffer, pixel: Float) {
        if (input.modelNormalizes) {
            if (input.dtype.bytes == 1) out.put(pixel.toInt().toByte()) else putFloat(out, pixel)
            return
        }
        val x = (pixel - meanF) * invStdF
        if (!input.dtype.quantized) {
            putFloat(out, x)
        } else {
            val q = (Math.rint((x / scaleF).toDouble()) + input.zeroPoint).coerceIn(
                    input.dtype.minQ.toDouble(), input.dtype.maxQ.toDouble())
            out.put(q.toInt().toByte())
        }
    }

    private fun putFloat(out: ByteBuffer, v: Float) {
        if (input.dtype == DType.FLOAT16) out.putShort(Half.fromFloat(v)) else out.putFloat(v)
    }

    /** Bilinear sample at (x, y) into [rgb], rounded half to even and clamped to 0..255 as a uint8 crop would be. */
    private fun sample(argb: IntArray, width: Int, height: Int, x: Double, y: Double) {
        val x0 = Math.floor(x).toInt()
        val y0 = Math.floor(y).toInt()
        val fx = x - x0
        val fy = y - y0
        rgb.fill(0.0)
        accumulate(argb, width, height, x0, y0, (1 - fx) * (1 - fy))
        accumulate(argb, width, height, x0 + 1, y0, fx * (1 - fy))
        accumulate(argb, width, height, x0, y0 + 1, (1 - fx) * fy)
        accumulate(argb, width, height, x0 + 1, y0 + 1, fx * fy)
        for (c in 0 until 3) rgb[c] = Math.rint(rgb[c]).coerceIn(0.0, 255.0)
    }

    private fun accumulate(argb: IntArray, width: Int, height: Int, ix: Int, iy: Int, weight: Double) {
        if (weight == 0.0) return
        if (ix < 0 || iy < 0 || ix >= width || iy >= height) {
            for (c in 0 until 3) rgb[c] += weight * border
            return
        }
        val p = argb[iy * width + ix]
        rgb[0] += weight * ((p shr 16) and 0xFF)
        rgb[1] += weight * ((p shr 8) and 0xFF)
        rgb[2] += weight * (p and 0xFF)
    }
}

/** IEEE 754 half precision, round to nearest even (what NumPy's astype(float16) does); Java 17 has no Float16. */
object Half {
    fun fromFloat(f: Float): Short {
        val bits = java.lang.Float.floatToRawIntBits(f)
        val sign = (bits ushr 16) and 0x8000
        val value = bits and 0x7fffffff
        if (value >= 0x7f800000) {  // inf stays inf, NaN stays a (quiet) NaN
            return (sign or 0x7c00 or (if (value > 0x7f800000) 0x200 else 0)).toShort()
        }
        if (value >= 0x47800000) return (sign or 0x7c00).toShort()  // >= 65536: overflow to inf
        if (value < 0x38800000) {  // below the smallest normal half (2^-14): subnormal or zero
            val e = value ushr 23
            if (e < 102) return sign.toShort()  // below 2^-25: rounds to zero
            val m = (value and 0x7fffff) or 0x800000
            val shift = 126 - e
            var h = m ushr shift
            val rem = m and ((1 shl shift) - 1)
            val halfway = 1 shl (shift - 1)
            if (rem > halfway || (rem == halfway && (h and 1) == 1)) h++
            return (sign or h).toShort()
        }
        var h = ((((value ushr 23) - 127 + 15)) shl 10) or ((value and 0x7fffff) ushr 13)
        val rem = value and 0x1fff
        if (rem > 0x1000 || (rem == 0x1000 && (h and 1) == 1)) h++  // a carry into the exponent is correct
        return (sign or h).toShort()
    }

    fun toFloat(half: Short): Float {
        val h = half.toInt() and 0xffff
        val sign = (h and 0x8000) shl 16
        val e = (h ushr 10) and 0x1f
        val m = h and 0x3ff
        return when (e) {
            0 -> (if (sign != 0) -1f else 1f) * m * (1f / (1 shl 24))
            31 -> java.lang.Float.intBitsToFloat(sign or 0x7f800000 or (m shl 13))
            else -> java.lang.Float.intBitsToFloat(sign or ((e - 15 + 127) shl 23) or (m shl 13))
        }
    }
}
