package org.tfalign.core

import java.io.File

/** Locates tests/golden (shared with the Python and Swift tests): -Dtfalign.golden=DIR, else walks up from cwd. */
object Golden {
    val dir: File by lazy {
        System.getProperty("tfalign.golden")?.let { return@lazy File(it) }
        var d: File? = File(System.getProperty("user.dir")).absoluteFile
        while (d != null) {
            val g = File(d, "tests/golden")
            if (File(g, "one_euro.json").isFile) return@lazy g
            d = d.parentFile
        }
        throw IllegalStateException("tests/golden not found above ${System.getProperty("user.dir")}; " +
                "pass -Dtfalign.golden=DIR")
    }

    fun json(name: String): JsonNode {
        val f = File(dir, name)
        return JsonNode(Json.parse(f.readText(), f.path), f.path, "")
    }
}
