package org.tfalign.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.security.MessageDigest
import javax.imageio.ImageIO

/**
 * The export's golden landmarks (tests/golden/landmarks_*.json + crop PNG), as tests/app_reference.py turns them
 * into app-core checks: through the app's crop with the golden's identity box, the PNG becomes bit for bit the model
 * input tfalign.runtime builds (per export mode), and the expected points decode to u × W - 0.5.
 */
class ExportGoldenTest {
    private val golden = Golden.json("app_cases.json")

    private fun section(): JsonNode {
        assumeTrue("no export golden in app_cases.json", golden.has("export_golden"))
        return golden["export_golden"]
    }

    @Test
    fun pngThroughTheAppCropIsTheRuntimeInputBitForBit() {
        val g = section()
        val png = ImageIO.read(File(Golden.dir, g["png"].string()))
        val w = png.width
        val h = png.height
        val argb = png.getRGB(0, 0, w, h, null, 0, w)
        val cases = g["cases"].list()
        assertEquals(setOf("none", "float16", "dynamic", "int8"), cases.map { it["mode"].string() }.toSet())
        for (c in cases) {
            val mode = c["mode"].string()
            val k = ModelContract.parse(Json.write(c["contract"].value), "export golden $mode")
            val b = c["box"].doubles()
            val window = CropWindow.from(FaceBox(b[0], b[1], b[2], b[3]), k.crop)
            val e = c["expected_window"].doubles()
            assertEquals("$mode window", e.toList(), listOf(window.cx, window.cy, window.side))
            val buf = ByteBuffer.allocate(k.input.byteSize).order(ByteOrder.LITTLE_ENDIAN)
            InputEncoder(k).encode(argb, w, h, window, buf)
            val head = c["expected_input_head"].doubles()
            for (j in head.indices) {
                val v = if (k.input.dtype == DType.FLOAT32) buf.getFloat(4 * j).toDouble() else buf.get(j).toDouble()
                assertEquals("$mode input[$j]", head[j], v, 0.0)
            }
            val sha = MessageDigest.getInstance("SHA-256").digest(buf.array()).joinToString("") {
                String.format("%02x", it)
            }
            assertEquals("$mode: SHA-256 of the model input", c["expected_input_sha256"].string(), sha)
        }
    }

    @Test
    fun expectedPointsDecodeToCropPixels() {
        for (c in section()["cases"].list()) {
            val k = ModelContract.parse(Json.write(c["contract"].value), "export golden")
            val b = c["box"].doubles()
            val window = CropWindow.from(FaceBox(b[0], b[1], b[2], b[3]), k.crop)
            val raw = c["raw_output"].doubles()
            val pts = LandmarkDecoder(k).decodeValues(raw, window)
            val expected = c["expected_points"].list().flatMap { it.doubles().toList() }
            for (j in expected.indices) {
                assertEquals("${c["mode"].string()}[$j]", expected[j], pts[j], 1e-4)
                // identity box: image pixel = u × W - 0.5
                assertEquals(raw[j] * k.input.width - 0.5, pts[j], 1e-9)
            }
            assertTrue(pts.size == 2 * k.scheme.numPoints)
        }
    }
}
