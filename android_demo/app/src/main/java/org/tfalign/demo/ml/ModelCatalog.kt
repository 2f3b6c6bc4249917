package org.tfalign.demo.ml

import android.content.res.AssetManager
import org.tfalign.core.ContractException
import org.tfalign.core.JsonException
import org.tfalign.core.ModelContract
import java.io.FileInputStream
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/** A model in assets/models: MODEL.tflite with its MODEL.contract.json (copied in by scripts/copy_models.sh). */
class ModelEntry(val name: String, val modelAsset: String, val contractAsset: String, val contract: ModelContract) {
    override fun toString() = "$name (${contract.input.dtype.json}, ${contract.scheme.numPoints} pts)"
}

object ModelCatalog {
    const val DIR = "models"
    private const val CONTRACT_SUFFIX = ".contract.json"

    /** Usable models, and one message per contract that could not be used (shown to the user, not hidden). */
    fun list(assets: AssetManager): Pair<List<ModelEntry>, List<String>> {
        val files = assets.list(DIR)?.toSet() ?: emptySet()
        val entries = ArrayList<ModelEntry>()
        val problems = ArrayList<String>()
        for (file in files.filter { it.endsWith(CONTRACT_SUFFIX) }.sorted()) {
            val name = file.removeSuffix(CONTRACT_SUFFIX)
            val model = "$name.tflite"
            if (model !in files) {
                problems.add("$DIR/$file: no $model beside it")
                continue
            }
            try {
                val text = assets.open("$DIR/$file").bufferedReader().use { it.readText() }
                entries.add(ModelEntry(name, "$DIR/$model", "$DIR/$file", ModelContract.parse(text, "$DIR/$file")))
            } catch (e: ContractException) {
                problems.add(e.message ?: file)
            } catch (e: JsonException) {
                problems.add(e.message ?: file)
            }
        }
        return Pair(entries, problems)
    }

    /** Memory-maps the model (assets are stored uncompressed, see app/build.gradle.kts). */
    fun map(assets: AssetManager, entry: ModelEntry): MappedByteBuffer =
            assets.openFd(entry.modelAsset).use { fd ->
                FileInputStream(fd.fileDescriptor).channel.use { ch ->
                    ch.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
                }
            }
}
