package org.tfalign.core

import java.io.File
import java.io.FileOutputStream
import java.nio.file.Files
import java.nio.file.StandardCopyOption

/** Whole-file writes that a reader (adb pull, the profiler) never sees half-done: temp file + atomic rename. */
object AtomicFiles {
    fun write(file: File, text: String): File {
        val dir = file.absoluteFile.parentFile
        if (!dir.isDirectory && !dir.mkdirs()) throw java.io.IOException("cannot create folder ${dir.path}")
        val tmp = File.createTempFile(".${file.name}.", ".tmp", dir)
        try {
            FileOutputStream(tmp).use { out ->
                out.write(text.toByteArray(Charsets.UTF_8))
                out.fd.sync()
            }
            Files.move(tmp.toPath(), file.toPath(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING)
        } finally {
            tmp.delete()
        }
        return file
    }
}
