package org.tfalign.core

import java.nio.ByteBuffer

/** Turns the landmark output tensor into image pixel coordinates [x0, y0, x1, y1, ...]. */
class LandmarkDecoder(private val output: OutputSpec, private val inputWidth: Int, private val inputHeight: Int) {
    constructor(contract: ModelContract) : this(contract.landmarks, contract.input.width, contract.input.height)

    val numPoints: Int get() = output.elements / 2

    /** Reads the tensor from [buffer] (absolute positions from 0; the buffer's byte order must be native). */
    fun decode(buffer: ByteBuffer, window: CropWindow, out: DoubleArray = DoubleArray(output.elements)): DoubleArray {
        require(buffer.capacity() >= output.byteSize) {
            "output buffer has ${buffer.capacity()} bytes, the contract's landmark tensor needs ${output.byteSize}"
        }
        for (k in 0 until output.elements) {
            out[k] = when (output.dtype) {
                DType.FLOAT32 -> buffer.getFloat(4 * k).toDouble()
                DType.FLOAT16 -> Half.toFloat(buffer.getShort(2 * k)).toDouble()
                DType.INT8 -> buffer.get(k).toInt().toDouble()
                DType.UINT8 -> (buffer.get(k).toInt() and 0xFF).toDouble()
            }
        }
        return decodeValues(out, window, out)
    }

    /** [raw] holds the tensor's stored values (floats, or the integers of a quantized tensor). */
    fun decodeValues(raw: DoubleArray, window: CropWindow, out: DoubleArray = DoubleArray(raw.size)): DoubleArray {
        require(raw.size == output.elements) { "landmark tensor has ${raw.size} values, contract says ${output.elements}" }
        for (p in 0 until raw.size / 2) {
            val u = dequantize(raw[2 * p])
            val v = dequantize(raw[2 * p + 1])
            out[2 * p] = window.imageX(u, inputWidth, output.origin)
            out[2 * p + 1] = window.imageY(v, inputHeight, output.origin)
        }
        return out
    }

    private fun dequantize(q: Double) = if (output.dtype.quantized) (q - output.zeroPoint) * output.scale else q
}
