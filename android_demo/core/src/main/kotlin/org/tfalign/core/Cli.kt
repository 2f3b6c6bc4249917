package org.tfalign.core

import java.io.File
import kotlin.system.exitProcess

/**
 * What the app computes for one frame, without a phone: contract + RGB image + face box + raw model output in,
 * crop window, model input values and image points out (JSON on stdout). Used by bench/app_core_parity.py to
 * compare the app core with `tfalign.runtime` on real exported models, and handy when a contract misbehaves.
 *
 *     java -cp core-classes:kotlin-stdlib.jar org.tfalign.core.CliKt REQUEST.json
 *
 * REQUEST.json: {"contract": {...}, "image": {"width", "height", "rgb": [r, g, b, ...]}, "box": [x, y, w, h],
 * "raw_output": [...]} ("raw_output" optional). Bad input: one line on stderr, exit code 2.
 */
fun main(args: Array<String>) {
    if (args.size != 1 || args[0] == "--help" || args[0] == "-h") {
        System.err.println("usage: CliKt REQUEST.json  (contract + image + box [+ raw_output] -> window, input, points)")
        exitProcess(2)
    }
    try {
        val path = args[0]
        if (!File(path).isFile) throw ContractException("$path: request file not found")
        val req = JsonNode(Json.parse(File(path).readText(), path), path, "")
        val contract = ModelContract.parse(Json.write(req["contract"].value), "$path: contract")
        val img = req["image"]
        val w = img["width"].positiveInt()
        val h = img["height"].positiveInt()
        val rgb = img["rgb"].ints()
        if (rgb.size != 3 * w * h) throw ContractException("$path: image.rgb has ${rgb.size} values, expected 3 × $w × $h")
        val argb = IntArray(w * h) { (0xFF shl 24) or (rgb[3 * it] shl 16) or (rgb[3 * it + 1] shl 8) or rgb[3 * it + 2] }
        val b = req["box"].doubles()
        if (b.size != 4) throw ContractException("$path: box must be [x, y, w, h]")
        val window = CropWindow.from(FaceBox(b[0], b[1], b[2], b[3]), contract.crop)
        val buf = java.nio.ByteBuffer.allocate(contract.input.byteSize).order(java.nio.ByteOrder.nativeOrder())
        InputEncoder(contract).encode(argb, w, h, window, buf)
        buf.rewind()
        val input = DoubleArray(contract.input.height * contract.input.width * contract.input.channels) {
            when (contract.input.dtype) {
                DType.FLOAT32 -> buf.getFloat().toDouble()
                DType.FLOAT16 -> Half.toFloat(buf.getShort()).toDouble()
                DType.INT8 -> buf.get().toDouble()
                DType.UINT8 -> (buf.get().toInt() and 0xFF).toDouble()
            }
        }
        val out = linkedMapOf<String, Any?>("window" to listOf(window.cx, window.cy, window.side), "input" to input)
        req.opt("raw_output")?.let { out["points"] = LandmarkDecoder(contract).decodeValues(it.doubles(), window) }
        print(Json.write(out))
    } catch (e: IllegalArgumentException) {  // ContractException, JsonException and bad values
        System.err.println(e.message)
        exitProcess(2)
    }
}
