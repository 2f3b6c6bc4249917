package org.tfalign.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** tests/golden/app_cases.json: crop window, preprocessing, decoding and percentiles against the Python reference. */
class ContractMathTest {
    private val golden = Golden.json("app_cases.json")
    private val tol = golden["tolerance"]
    private val cases = golden["cases"].list()

    private fun contract(c: JsonNode) = ModelContract.parse(Json.write(c["contract"].value), "${c["name"].string()}")

    private fun box(c: JsonNode) = c["box"].doubles().let { FaceBox(it[0], it[1], it[2], it[3]) }

    private fun frame(): Triple<IntArray, Int, Int> {
        val img = golden["image"]
        val w = img["width"].int()
        val h = img["height"].int()
        val rgb = img["rgb"].ints()
        val argb = IntArray(w * h) { (0xFF shl 24) or (rgb[3 * it] shl 16) or (rgb[3 * it + 1] shl 8) or rgb[3 * it + 2] }
        return Triple(argb, w, h)
    }

    @Test
    fun vectorsCoverEveryInputKindAndOutputDtype() {
        assertEquals(DType.values().toSet(), cases.map { contract(it).input.dtype }.toSet())
        assertEquals(setOf(DType.FLOAT32, DType.INT8, DType.UINT8), cases.map { contract(it).landmarks.dtype }.toSet())
        assertEquals(Origin.values().toSet(), cases.map { contract(it).landmarks.origin }.toSet())
        assertEquals(setOf(true, false), cases.map { contract(it).input.modelNormalizes }.toSet())
        assertEquals(setOf(true, false), cases.map { contract(it).input.gray }.toSet())
    }

    @Test
    fun halfPrecisionMatchesNumpy() {
        val h = golden["float16"]
        val f32 = h["float32_bits"].list().map { java.lang.Float.intBitsToFloat(it.double().toLong().toInt()) }
        val f16 = h["float16_bits"].ints()
        for (k in f32.indices) {
            val got = Half.fromFloat(f32[k]).toInt() and 0xffff
            assertEquals("float16 of ${f32[k]}", f16[k], got)
            val back = Half.toFloat(f16[k].toShort())
            assertEquals("float of half ${f16[k]}", java.lang.Float.floatToIntBits(back),
                    java.lang.Float.floatToIntBits(Half.toFloat(Half.fromFloat(back))))
        }
    }

    @Test
    fun cropWindowFromBox() {
        for (c in cases) {
            val w = CropWindow.from(box(c), contract(c).crop)
            val e = c["expected_window"].doubles()
            val t = tol["window"].double()
            assertEquals(c["name"].string(), e[0], w.cx, t)
            assertEquals(c["name"].string(), e[1], w.cy, t)
            assertEquals(c["name"].string(), e[2], w.side, t)
        }
    }

    @Test
    fun decodesRawValuesToImagePoints() {
        for (c in cases) {
            val k = contract(c)
            val pts = LandmarkDecoder(k).decodeValues(c["raw_output"].doubles(), CropWindow.from(box(c), k.crop))
            assertArrayClose(c["name"].string(), c["expected_points"].list().flatMap { it.doubles().toList() },
                    pts, tol["points"].double())
        }
    }

    @Test
    fun decodesOutputTensorBytes() {
        for (c in cases) {
            val k = contract(c)
            val raw = c["raw_output"].doubles()
            val buf = ByteBuffer.allocateDirect(k.landmarks.byteSize).order(ByteOrder.nativeOrder())
            for (v in raw) if (k.landmarks.dtype == DType.FLOAT32) buf.putFloat(v.toFloat()) else buf.put(v.toInt().toByte())
            val pts = LandmarkDecoder(k).decode(buf, CropWindow.from(box(c), k.crop))
            // float32 storage rounds the raw value: 1e-7 relative of a crop side of a few pixels.
            assertArrayClose(c["name"].string(), c["expected_points"].list().flatMap { it.doubles().toList() },
                    pts, 1e-4)
        }
    }

    @Test
    fun encodesInputTensor() {
        val (argb, w, h) = frame()
        for (c in cases) {
            val k = contract(c)
            val buf = ByteBuffer.allocate(k.input.byteSize).order(ByteOrder.nativeOrder())
            InputEncoder(k).encode(argb, w, h, CropWindow.from(box(c), k.crop), buf)
            assertEquals("${c["name"].string()}: buffer filled", 0, buf.remaining())
            buf.rewind()
            val expected = c["expected_input"].doubles()
            val got = DoubleArray(expected.size) {
                when (k.input.dtype) {
                    DType.FLOAT32 -> buf.getFloat().toDouble()
                    DType.FLOAT16 -> Half.toFloat(buf.getShort()).toDouble()
                    DType.INT8 -> buf.get().toInt().toDouble()
                    DType.UINT8 -> (buf.get().toInt() and 0xFF).toDouble()
                }
            }
            val integers = k.input.dtype.quantized || k.input.modelNormalizes
            val t = if (integers) tol["input_quantized"].double() else tol["input_float"].double()
            assertArrayClose("${c["name"].string()} input", expected.toList(), got, t)
        }
    }

    @Test
    fun percentilesMatchNumpy() {
        val s = golden["stats"]
        val e = s["expected"]
        val sum = LatencySummary.of(s["samples_ms"].doubles())
        val t = tol["stats"].double()
        assertEquals(e["p50_ms"].double(), sum.p50Ms, t)
        assertEquals(e["p90_ms"].double(), sum.p90Ms, t)
        assertEquals(e["p95_ms"].double(), sum.p95Ms, t)
        assertEquals(e["p99_ms"].double(), sum.p99Ms, t)
        assertEquals(e["mean_ms"].double(), sum.meanMs, t)
        assertEquals(e["min_ms"].double(), sum.minMs, t)
        assertEquals(e["max_ms"].double(), sum.maxMs, t)
    }

    @Test
    fun rollingLatencyKeepsTheLastFrames() {
        val r = RollingLatency(capacity = 3)
        for (k in 1..5) r.add(k.toDouble(), 10.0 * k, 0.5)
        assertEquals(3, r.size)
        assertEquals(4.0, r.summary(Stage.PRE)!!.p50Ms, 0.0)
        assertEquals(50.0, r.summary(Stage.INFERENCE)!!.maxMs, 0.0)
        // Phones set to a decimal-comma language must still show (and write) "4.0".
        val saved = java.util.Locale.getDefault()
        try {
            java.util.Locale.setDefault(java.util.Locale.GERMANY)
            assertTrue(r.overlayText(), r.overlayText().startsWith("pre 4.0 · inference 40.0 · post 0.5 ms"))
        } finally {
            java.util.Locale.setDefault(saved)
        }
    }

    @Test
    fun calibrationMovesAndScalesTheBox() {
        val b = BoxCalibration(scale = 2.0, shiftX = 0.1, shiftY = -0.2).apply(FaceBox(10.0, 20.0, 40.0, 20.0))
        assertEquals(30.0 + 4.0, b.centerX, 1e-12)
        assertEquals(30.0 - 8.0, b.centerY, 1e-12)
        assertEquals(80.0, b.w, 1e-12)
        assertEquals(40.0, b.h, 1e-12)
    }

    private fun assertArrayClose(what: String, expected: List<Double>, got: DoubleArray, t: Double) {
        assertEquals("$what: length", expected.size, got.size)
        for (k in expected.indices) assertEquals("$what[$k]", expected[k], got[k], t)
    }
}
