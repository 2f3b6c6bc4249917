package org.tfalign.core

import java.io.File

/** A contract file that cannot be used: the message names the file and the field. */
class ContractException(message: String) : IllegalArgumentException(message)

enum class DType(val json: String, val bytes: Int) {
    FLOAT32("float32", 4), FLOAT16("float16", 2), INT8("int8", 1), UINT8("uint8", 1);

    /** Integer tensors carry scale / zero_point; float16 is stored as IEEE half and needs no dequantization. */
    val quantized: Boolean get() = this == INT8 || this == UINT8
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

class SchemeInfo(val name: String, val numPoints: Int, val pointNames: List<String>)

/**
 * Model input: `x = (pixel_0_255 - mean) / std` and, for integer inputs, `q = round(x / scale) + zeroPoint`
 * (round half to even, as NumPy does), clamped to the dtype's range. With [modelNormalizes] (CoreML image inputs,
 * `normalization: "model"`) the client writes the raw 0-255 pixels and the model applies mean/std itself.
 */
class InputSpec(
    val index: Int, val name: String?, val height: Int, val width: Int, val channels: Int, val gray: Boolean,
    val dtype: DType, val mean: Double, val std: Double, val scale: Double, val zeroPoint: Int,
    val modelNormalizes: Boolean
) {
    val byteSize: Int get() = height * width * channels * dtype.bytes
}

/**
 * Crop: side = scale × max(w, h) of the face box (the tight box of the scheme's points), centre = box centre +
 * (shiftX, shiftY) × side, resampled bilinearly; pixels outside the image read as [border] (0-255).
 */
class CropSpec(val scale: Double, val shiftX: Double, val shiftY: Double, val border: Double)

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
        /** Contract major version this code reads ("1.x": minor versions only add optional fields). */
        const val SUPPORTED_MAJOR_VERSION = 1

        fun load(file: File): ModelContract {
            if (!file.isFile) throw ContractException("${file.path}: contract file not found")
            return parse(file.readText(), file.path)
        }

        fun parse(text: String, source: String): ModelContract {
            val json = Json.parse(text, source)
            val root = JsonNode(json, source, "")
            if (json !is Map<*, *>) throw ContractException("$source: a contract must be a JSON object")
            val versionText = root["format_version"].string()
            val version = Regex("^([0-9]+)\\.[0-9]+$").find(versionText)?.groupValues?.get(1)?.toInt()
                    ?: throw ContractException("$source: format_version is \"$versionText\"; expected \"major.minor\"")
            if (version != SUPPORTED_MAJOR_VERSION) {
                throw ContractException("$source: format_version is \"$versionText\"; this app reads " +
                        "$SUPPORTED_MAJOR_VERSION.x (update the app, or export with a matching tfalign)")
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

        private fun parseInput(n: JsonNode): InputSpec {
            val channels = n["channels"].int()
            val color = n["color"].oneOf("RGB", "GRAY")
            if ((color == "GRAY") != (channels == 1) || channels !in intArrayOf(1, 3)) {
                throw ContractException("${n.source}: input.color \"$color\" does not match input.channels " +
                        "$channels (RGB needs 3, GRAY needs 1)")
            }
            val dtype = DType.parse(n["dtype"])
            val modelNormalizes = (n.opt("normalization")?.oneOf("client", "model") ?: "client") == "model"
            val quantize = dtype.quantized && !modelNormalizes
            return InputSpec(n.opt("index")?.int() ?: 0, n.opt("name")?.string(), n["height"].positiveInt(),
                    n["width"].positiveInt(), channels, color == "GRAY", dtype, n["mean"].double(),
                    n["std"].positiveDouble(), if (quantize) n["scale"].positiveDouble() else 1.0,
                    if (quantize) n["zero_point"].int() else 0, modelNormalizes)
        }

        private fun parseCrop(n: JsonNode): CropSpec {
            // Only the resampling and box tfalign trains with exist; a contract asking for others is refused.
            n.opt("interpolation")?.oneOf("bilinear")
            n.opt("box")?.oneOf("landmarks_tight")
            return CropSpec(n["scale"].positiveDouble(), n.opt("shift_x")?.double() ?: 0.0,
                    n.opt("shift_y")?.double() ?: 0.0, n.opt("border")?.double() ?: 0.0)
        }

        private fun parseLandmarks(n: JsonNode, scheme: SchemeInfo): OutputSpec {
            n["layout"].oneOf("xy_normalized")
            val originName = n["origin"].oneOf(*Origin.values().map { it.json }.toTypedArray())
            val dtype = DType.parse(n["dtype"])
            val shape = n["shape"].ints()
            val out = OutputSpec(n.opt("index")?.int() ?: 0, n.opt("name")?.string(), shape,
                    Origin.values().first { it.json == originName }, dtype,
                    if (dtype.quantized) n["scale"].positiveDouble() else 1.0,
                    if (dtype.quantized) n["zero_point"].int() else 0)
            if (shape.size < 2 || shape[shape.size - 1] != 2 || shape[shape.size - 2] != scheme.numPoints ||
                    out.elements != 2 * scheme.numPoints) {
                throw ContractException("${n.source}: ${n.path}.shape ${shape.joinToString(", ", "[", "]")} must " +
                        "be [1, num_points, 2] = [1, ${scheme.numPoints}, 2] for layout xy_normalized")
            }
            return out
        }
    }
}
