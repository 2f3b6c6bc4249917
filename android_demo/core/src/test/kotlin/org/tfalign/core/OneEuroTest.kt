package org.tfalign.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

class OneEuroTest {
    private val golden = Golden.json("one_euro.json")
    private val tol = golden["tolerance"].double()

    private fun params(n: JsonNode) =
            OneEuroParams(n["min_cutoff"].double(), n["beta"].double(), n["d_cutoff"].double())

    @Test
    fun defaultsMatchTheSharedFile() {
        assertEquals(params(golden["defaults"]), OneEuroParams())
    }

    @Test
    fun scalarFilterMatchesEveryVector() {
        val cases = golden["cases"].list()
        assertTrue("no one-euro cases in the golden file", cases.isNotEmpty())
        for (c in cases) {
            val f = OneEuroFilter(params(c["params"]))
            val ts = c["timestamps_s"].doubles()
            val xs = c["inputs"].doubles()
            val vs = c["value_scale"].doubles()
            val expected = c["expected"].doubles()
            for (k in ts.indices) {
                assertEquals("${c["name"].string()} sample $k", expected[k], f.filter(ts[k], xs[k], vs[k]), tol)
            }
        }
    }

    @Test
    fun landmarkSmootherMatchesVectors() {
        for (c in golden["landmark_cases"].list()) {
            val s = LandmarkSmoother(params(c["params"]))
            val ts = c["timestamps_s"].doubles()
            val frames = c["frames"].list()
            val expected = c["expected"].list()
            for (k in ts.indices) {
                val pts = frames[k].list().flatMap { it.doubles().toList() }.toDoubleArray()
                val out = s.smooth(ts[k], pts)
                val exp = expected[k].doubles()
                for (j in exp.indices) assertEquals("${c["name"].string()} frame $k value $j", exp[j], out[j], tol)
            }
        }
    }

    @Test
    fun resetForgetsTheOldFace() {
        val f = OneEuroFilter()
        f.filter(0.0, 10.0)
        f.filter(0.1, 11.0)
        f.reset()
        assertEquals(500.0, f.filter(0.2, 500.0), 0.0)
    }

    @Test(expected = IllegalArgumentException::class)
    fun rejectsNonPositiveCutoff() {
        OneEuroParams(minCutoff = 0.0)
    }
}
