package org.tfalign.demo.ml

import org.tfalign.core.CropWindow
import org.tfalign.core.FaceBox
import org.tfalign.core.InputEncoder
import org.tfalign.core.LandmarkDecoder
import org.tfalign.core.RuntimeConfig
import java.io.Closeable
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** Landmarks in image pixels for one face, with the time each stage took. */
class Estimate(val points: DoubleArray, val window: CropWindow, val preMs: Double, val inferenceMs: Double,
               val postMs: Double)

/**
 * Runs one contract-described model: crop + normalise (core [InputEncoder]), invoke, decode (core
 * [LandmarkDecoder]). Everything that is not a LiteRT call lives in the core and is unit-tested there.
 * Not thread-safe: one analysis thread owns it.
 */
class LandmarkEstimator(val entry: ModelEntry, model: ByteBuffer, val config: RuntimeConfig) : Closeable {
    private val contract = entry.contract
    private val opened = InterpreterFactory.open(model, contract, config)
    private val encoder = InputEncoder(contract)
    private val decoder = LandmarkDecoder(contract)
    private val input = ByteBuffer.allocateDirect(encoder.byteSize).order(ByteOrder.nativeOrder())
    private val output = ByteBuffer.allocateDirect(contract.landmarks.byteSize).order(ByteOrder.nativeOrder())
    private val inputs = arrayOfNulls<Any>(opened.interpreter.inputTensorCount).also { it[contract.input.index] = input }
    private val outputs = HashMap<Int, Any>().also { it[contract.landmarks.index] = output }

    /** [argb]: an upright frame, [width] × [height]; [box]: the face box the contract's crop is defined on. */
    fun estimate(argb: IntArray, width: Int, height: Int, box: FaceBox): Estimate {
        val t0 = System.nanoTime()
        val window = CropWindow.from(box, contract.crop)
        input.rewind()
        encoder.encode(argb, width, height, window, input)
        val t1 = System.nanoTime()
        invoke()
        val t2 = System.nanoTime()
        val points = decoder.decode(output, window)
        val t3 = System.nanoTime()
        return Estimate(points, window, (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6)
    }

    /** Inference alone on the current input tensor (what benchmark mode times). */
    fun invoke() {
        input.rewind()
        output.rewind()
        opened.interpreter.runForMultipleInputsOutputs(inputs, outputs)
    }

    override fun close() = opened.close()
}
