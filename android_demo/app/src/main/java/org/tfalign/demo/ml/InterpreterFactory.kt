package org.tfalign.demo.ml

import org.tensorflow.lite.DataType
import org.tensorflow.lite.Delegate
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import org.tfalign.core.ContractException
import org.tfalign.core.DType
import org.tfalign.core.ModelContract
import org.tfalign.core.RuntimeConfig
import java.io.Closeable
import java.nio.ByteBuffer

/** An interpreter with its delegate; closing releases both (the delegate must outlive the interpreter). */
class OpenedInterpreter(val interpreter: Interpreter, private val delegate: Delegate?) : Closeable {
    override fun close() {
        interpreter.close()
        closeDelegate(delegate)
    }
}

// GpuDelegate is Closeable, NnApiDelegate only AutoCloseable.
private fun closeDelegate(delegate: Delegate?) = (delegate as? AutoCloseable)?.close()

/** CPU (XNNPACK or builtin kernels), GPU or NNAPI, named as in schemas/benchmark.schema.json. */
object InterpreterFactory {
    val DELEGATES = listOf("xnnpack", "cpu", "gpu", "nnapi")

    fun open(model: ByteBuffer, contract: ModelContract, config: RuntimeConfig): OpenedInterpreter {
        val options = Interpreter.Options()
        var delegate: Delegate? = null
        when (config.delegate) {
            "xnnpack" -> options.setUseXNNPACK(true).setNumThreads(config.threads ?: 1)
            "cpu" -> options.setUseXNNPACK(false).setNumThreads(config.threads ?: 1)
            "gpu" -> {
                val compat = CompatibilityList()
                if (!compat.isDelegateSupportedOnThisDevice) {
                    throw UnsupportedOperationException("the GPU delegate is not supported on this device")
                }
                val gpu = GpuDelegate(compat.bestOptionsForThisDevice)
                options.addDelegate(gpu)
                delegate = gpu
            }
            "nnapi" -> {
                val nnapi = NnApiDelegate()
                options.addDelegate(nnapi)
                delegate = nnapi
            }
            else -> throw IllegalArgumentException("delegate '${config.delegate}' is not one of $DELEGATES")
        }
        try {
            val interpreter = Interpreter(model, options)
            interpreter.allocateTensors()
            checkAgainstContract(interpreter, contract)
            return OpenedInterpreter(interpreter, delegate)
        } catch (e: Exception) {
            closeDelegate(delegate)
            throw e
        }
    }

    // LiteRT's Java API has no float16 tensor type: a float16 contract tensor is refused below, naming the file.
    private val TYPES = mapOf(DType.FLOAT32 to DataType.FLOAT32, DType.INT8 to DataType.INT8,
            DType.UINT8 to DataType.UINT8)

    /** The contract must describe this model: same checks as tfalign.runtime.LandmarkModel. */
    private fun checkAgainstContract(interpreter: Interpreter, contract: ModelContract) {
        val inp = contract.input
        val tensor = interpreter.getInputTensor(inp.index)
        val expect = intArrayOf(1, inp.height, inp.width, inp.channels)
        if (!tensor.shape().contentEquals(expect)) {
            throw ContractException("${contract.source}: contract input ${expect.toList()} does not match the " +
                    "model's ${tensor.shape().toList()}")
        }
        if (tensor.dataType() != TYPES[inp.dtype]) {
            throw ContractException("${contract.source}: contract input dtype ${inp.dtype.json} but the model " +
                    "takes ${tensor.dataType()}")
        }
        val out = interpreter.getOutputTensor(contract.landmarks.index)
        if (out.numBytes() != contract.landmarks.byteSize || out.dataType() != TYPES[contract.landmarks.dtype]) {
            throw ContractException("${contract.source}: landmark output (${contract.landmarks.dtype.json}, " +
                    "${contract.landmarks.byteSize} bytes) does not match the model's ${out.dataType()} " +
                    "${out.shape().toList()}")
        }
    }
}
