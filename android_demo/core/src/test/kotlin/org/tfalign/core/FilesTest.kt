package org.tfalign.core

import org.junit.Assert.assertEquals
import org.junit.Test
import java.io.File
import java.nio.file.Files

class FilesTest {
    @Test
    fun replacesTheFileAndLeavesNoTemporaries() {
        val dir = Files.createTempDirectory("tfalign-atomic").toFile()
        val f = File(dir, "sub/report.json")
        AtomicFiles.write(f, "one")
        AtomicFiles.write(f, "two")
        assertEquals("two", f.readText())
        assertEquals(listOf("report.json"), f.parentFile.list()!!.toList())
        dir.deleteRecursively()
    }
}
