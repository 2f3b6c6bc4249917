package org.tfalign.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File

class ContractParsingTest {
    /** A valid contract from the shared vectors, as a mutable map to break one field at a time. */
    private fun base(): MutableMap<String, Any?> {
        val c = Golden.json("app_cases.json")["cases"].list().first { it["name"].string().startsWith("int8_io") }
        @Suppress("UNCHECKED_CAST")
        return Json.parse(Json.write(c["contract"].value)) as MutableMap<String, Any?>
    }

    @Suppress("UNCHECKED_CAST")
    private fun MutableMap<String, Any?>.sub(key: String) = this[key] as MutableMap<String, Any?>

    @Suppress("UNCHECKED_CAST")
    private fun MutableMap<String, Any?>.output0() = (this["outputs"] as MutableList<Any?>)[0] as MutableMap<String, Any?>

    private fun expectError(map: Map<String, Any?>, vararg fragments: String) {
        try {
            ModelContract.parse(Json.write(map), "models/face.json")
            fail("expected a ContractException mentioning ${fragments.toList()}")
        } catch (e: ContractException) {
            val msg = e.message ?: ""
            assertTrue("'$msg' should name the file", msg.startsWith("models/face.json"))
            for (f in fragments) assertTrue("'$msg' should mention '$f'", msg.contains(f))
        }
    }

    @Test
    fun parsesAQuantizedContract() {
        val k = ModelContract.parse(Json.write(base()), "x.json")
        assertEquals(DType.INT8, k.input.dtype)
        assertEquals(0.0078125, k.input.scale, 0.0)
        assertEquals(-128, k.landmarks.zeroPoint)
        assertEquals(5, k.scheme.numPoints)
        assertEquals(6 * 6 * 3, k.input.byteSize)
        assertEquals(10, k.landmarks.byteSize)
    }

    @Test
    fun missingFieldIsNamed() {
        val m = base(); m.sub("input").remove("height")
        expectError(m, "input.height", "missing")
    }

    @Test
    fun quantizedInputNeedsScale() {
        val m = base(); m.sub("input").remove("scale")
        expectError(m, "input.scale")
    }

    @Test
    fun newerFormatVersionIsRefused() {
        val m = base(); m["format_version"] = "2.0"
        expectError(m, "format_version is \"2.0\"", "1.x")
    }

    @Test
    fun minorVersionsAreRead() {
        val m = base(); m["format_version"] = "1.7"
        assertEquals(1, ModelContract.parse(Json.write(m), "x.json").formatVersion)
    }

    @Test
    fun malformedVersionIsRefused() {
        val m = base(); m["format_version"] = "1"
        expectError(m, "format_version", "major.minor")
    }

    @Test
    fun onlyBilinearCropsAreAccepted() {
        val m = base(); m.sub("crop")["interpolation"] = "nearest"
        expectError(m, "crop.interpolation", "\"bilinear\"")
    }

    @Test
    fun modelNormalizedImageInputNeedsNoQuantization() {
        val m = base()
        val inp = m.sub("input")
        inp["dtype"] = "uint8"; inp["normalization"] = "model"; inp.remove("scale"); inp.remove("zero_point")
        val k = ModelContract.parse(Json.write(m), "x.mlpackage.json")
        assertTrue(k.input.modelNormalizes)
    }

    @Test
    fun colorMustMatchChannels() {
        val m = base(); m.sub("input")["color"] = "GRAY"
        expectError(m, "input.color", "channels")
    }

    @Test
    fun unknownDtypeListsTheAllowedOnes() {
        val m = base(); m.output0()["dtype"] = "float64"
        expectError(m, "outputs[0].dtype", "\"float64\"", "\"int8\"")
    }

    @Test
    fun outputShapeMustHoldAllPoints() {
        val m = base(); m.output0()["shape"] = listOf(1, 10)
        expectError(m, "outputs[0].shape", "[1, 5, 2]")
    }

    @Test
    fun wrongTypeIsNamed() {
        val m = base(); m.sub("crop")["scale"] = "1.25"
        expectError(m, "crop.scale", "must be a number")
    }

    @Test
    fun pointNamesMustMatchCount() {
        val m = base(); m.sub("scheme")["num_points"] = 4
        expectError(m, "point_names", "num_points 4")
    }

    @Test
    fun landmarkOutputMustExist() {
        val m = base(); m.output0()["kind"] = "heatmaps"
        expectError(m, "kind \"landmarks\"")
    }

    @Test
    fun badJsonNamesFileAndOffset() {
        try {
            ModelContract.parse("{\"format_version\": 1,", "broken.json")
            fail("expected JsonException")
        } catch (e: JsonException) {
            assertTrue(e.message!!, e.message!!.startsWith("broken.json: invalid JSON at offset"))
        }
    }

    @Test
    fun missingFileIsNamed() {
        try {
            ModelContract.load(File("no/such/contract.json"))
            fail("expected ContractException")
        } catch (e: ContractException) {
            assertTrue(e.message!!, e.message!!.contains("no/such/contract.json"))
        }
    }

    /** Every contract the export wrote into tests/golden parses (the real files, once the export issue lands). */
    @Test
    fun realContractsParse() {
        val files = Golden.dir.walkTopDown().filter { it.isFile && it.name.endsWith(".json") && isContract(it) }.toList()
        for (f in files) {
            val k = ModelContract.load(f)
            assertTrue(f.path, k.scheme.numPoints > 0)
        }
    }

    private fun isContract(f: File): Boolean {
        val v = try { Json.parse(f.readText(), f.path) } catch (e: JsonException) { return false }
        return v is Map<*, *> && v.containsKey("format_version") && v.containsKey("outputs") && v.containsKey("crop")
    }
}
