package org.tfalign.core

import org.junit.Assert.assertEquals
import org.junit.Assert.fail
import org.junit.Test

class JsonTest {
    @Test
    fun roundTrips() {
        val text = """{"a": [1, 2.5, -3e-2, true, null], "b": {"s": "x\"y\\z\n\u00e9"}, "c": []}"""
        val v = Json.parse(text)
        assertEquals(v, Json.parse(Json.write(v)))
        @Suppress("UNCHECKED_CAST")
        val a = (v as Map<String, Any?>)["a"] as List<Any?>
        assertEquals(1L, a[0])
        assertEquals(-0.03, a[2] as Double, 0.0)
    }

    @Test
    fun rejectsTrailingGarbage() {
        for (bad in listOf("{} x", "[1,]", "{\"a\" 1}", "\"open", "tru", "01x")) {
            try {
                Json.parse(bad, "t.json")
                fail("parsed invalid JSON: $bad")
            } catch (e: JsonException) {
                assertEquals(true, e.message!!.startsWith("t.json: invalid JSON"))
            }
        }
    }

    @Test(expected = JsonException::class)
    fun refusesToWriteNaN() {
        Json.write(listOf(Double.NaN))
    }
}
