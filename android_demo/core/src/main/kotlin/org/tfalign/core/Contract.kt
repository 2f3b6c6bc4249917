package org.tfalign.core

import java.io.File

/** A contract file that cannot be used: the message names the file and the field. */
class ContractException(message: String) : IllegalArgumentException(message)

enum class DType(val json: String, val bytes: Int) {
    FLOAT32("float32", 4), INT8("int8", 1), UINT8("uint8", 1);

    val quantized: Boolean get() = this != FLOAT32
    val minQ: Int get() = if (this == INT8) -128 else 0
    val maxQ: Int get() = if (this == INT8) 127 else 255

    companion object {
        fun parse(node: JsonNode): DType {
            val s = node.oneOf(*values().map { it.json }.toTypedArray())
            return values().first { it.json == s }
        }
    }
}

/** Where normalised coordinate 0 lies: the crop's left/top edge, or the first pixel's centre. */
enum class Origin(val json: String) { EDGE("edge"), CENTER("center") }

enum class Interpolation { BILINEAR, NEAREST }

class SchemeInfo(val name: String, val numPoints: Int, val pointNames: List<String>)

/**
 * Model input: `x = (pixel_0_255 - mean) / std` per channel and, for quantized inputs,
 * `q = round(x / scale) + zeroPoint` (round half to even, as NumPy does), clamped to the dtype's range.
 */
class InputSpec(
    val index: Int, val name: String?, val height: Int, val width: Int, val channels: Int, val gray: Boolean,
    val dtype: DType, val mean: DoubleArray, val std: DoubleArray, val scale: Double, val zeroPoint: Int
) {
    val byteSize: Int get() = height * width * channels * dtype.bytes
}

/** Crop: side = scale × max(w, h) of the face box, centre = box centre + (shiftX, shiftY) × side. */
class CropSpec(val scale: Double, val shiftX: Double, val shiftY: Double, val interpolation: Interpolation)

/** Landmark output tensor: `xy_normalized` = x0, y0, x1, y1, ... in [0, 1] of the crop; dequantised as (q - zp) × scale. */
class OutputSpec(
    val index: Int, val name: String?, val shape: IntArray, val origin: Origin, val dtype: DType,
    val scale: Double, val zeroPoint: Int
) {
    val elements: Int get() = shape.fold(1) { a, b -> a * b }
    val byteSize: Int get() = elements * dtype.bytes
}

/**
 * The model contract (issue 6) that the export writes beside every model: everything a client needs to run it.
 * Parsing validates every field the app uses and names the file and field when one is missing or wrong.
 */
class ModelContract(
    val source: String, val formatVersion: Int, val scheme: SchemeInfo, val input: InputSpec, val crop: CropSpec,
    val landmarks: OutputSpec, val raw: Map<*, *>
) {
    companion object {
        /** Contract format versions this code reads. */
        const val SUPPORTED_FORMAT_VERSION = 1
        private val INTERPOLATIONS = mapOf(
            "bilinear" to Interpolation.BILINEAR, "linear" to Interpolation.BILINEAR,
            "nearest" to Interpolation.NEAREST)

        fun load(file: File): ModelContract {
            if (!file.isFile) throw ContractException("${file.path}: contract file not found")
            return parse(file.readText(), file.path)
        }

        fun parse(text: String, source: String): ModelContract {
            val json = Json.parse(text, source)
            val root = JsonNode(json, source, "")
            if (json !is Map<*, *>) throw ContractException("$source: a contract must be a JSON object")
            val version = root["format_version"].int()
            if (version != SUPPORTED_FORMAT_VERSION) {
                throw ContractException("$source: format_version is $version; this app reads format_version " +
                        "$SUPPORTED_FORMAT_VERSION (update the app, or export with a matching tfalign)")
            }
            val scheme = parseScheme(root["scheme"])
            val input = parseInput(root["input"])
            val crop = parseCrop(root["crop"])
            val outputs = root["outputs"].list()
            val lm = outputs.filter { it["kind"].string() == "landmarks" }
            if (lm.size != 1) {
                throw ContractException("$source: outputs must hold exactly one entry with kind \"landmarks\"; " +
                        "found ${lm.size}")
            }
            return ModelContract(source, version, scheme, input, crop, parseLandmarks(lm[0], scheme), json)
        }

        private fun parseScheme(n: JsonNode): SchemeInfo {
            val count = n["num_points"].positiveInt()
            val names = n["point_names"].list().map { it.string() }
            if (names.size != count) {
                throw ContractException("${n.source}: ${n.path}.point_names has ${names.size} names for " +
                        "num_points $count")
            }
            return SchemeInfo(n["name"].string(), count, names)
        }

        private fun perChannel(n: JsonNode, channels: Int): DoubleArray {
            val v = if (n.value is List<*>) n.doubles() else DoubleArray(1) { n.double() }
            if (v.size == 1) return DoubleArray(channels) { v[0] }
            if (v.size != channels) {
                throw ContractException("${n.source}: ${n.path} has ${v.size} values for $channels channels")
            }
            return v
        }

        private fun parseInput(n: JsonNode): InputSpec {
            val channels = n["channels"].int()
            val color = n["color"].oneOf("RGB", "GRAY")
            if ((color == "GRAY") != (channels == 1) || channels !in intArrayOf(1, 3)) {
                throw ContractException("${n.source}: input.color \"$color\" does not match input.channels " +
                        "$channels (RGB needs 3, GRAY needs 1)")
            }
            val dtype = DType.parse(n["dtype"])
            val std = perChannel(n["std"], channels)
            std.forEachIndexed { i, s ->
                if (!(s > 0.0)) throw ContractException("${n.source}: input.std[$i] must be > 0, got $s")
            }
            val scale = if (dtype.quantized) n["scale"].positiveDouble() else 1.0
            val zp = if (dtype.quantized) n["zero_point"].int() else 0
            return InputSpec(n.opt("index")?.int() ?: 0, n.opt("name")?.string(), n["height"].positiveInt(),
                    n["width"].positiveInt(), channels, color == "GRAY", dtype, perChannel(n["mean"], channels),
                    std, scale, zp)
        }

        private fun parseCrop(n: JsonNode): CropSpec {
            val interp = n.opt("interpolation")?.oneOf(*INTERPOLATIONS.keys.toTypedArray()) ?: "bilinear"
            return CropSpec(n["scale"].positiveDouble(), n.opt("shift_x")?.double() ?: 0.0,
                    n.opt("shift_y")?.double() ?: 0.0, INTERPOLATIONS.getValue(interp))
        }

        private fun parseLandmarks(n: JsonNode, scheme: SchemeInfo): OutputSpec {
            n["layout"].oneOf("xy_normalized")
            val originName = n["origin"].oneOf(*Origin.values().map { it.json }.toTypedArray())
            val dtype = DType.parse(n["dtype"])
            val shape = n["shape"].ints()
            val out = OutputSpec(n["index"].int(), n.opt("name")?.string(), shape,
                    Origin.values().first { it.json == originName }, dtype,
                    if (dtype.quantized) n["scale"].positiveDouble() else 1.0,
                    if (dtype.quantized) n["zero_point"].int() else 0)
            if (out.elements != 2 * scheme.numPoints) {
                throw ContractException("${n.source}: ${n.path}.shape ${shape.joinToString(",", "[", "]")} holds " +
                        "${out.elements} values; layout xy_normalized needs 2 × num_points = ${2 * scheme.numPoints}")
            }
            return out
        }
    }
}
