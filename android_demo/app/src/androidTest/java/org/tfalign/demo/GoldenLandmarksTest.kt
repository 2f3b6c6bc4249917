package org.tfalign.demo

import android.graphics.BitmapFactory
import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Test
import org.junit.runner.RunWith
import org.tfalign.core.FaceBox
import org.tfalign.core.Json
import org.tfalign.core.JsonNode
import org.tfalign.core.RuntimeConfig
import org.tfalign.demo.ml.InterpreterFactory
import org.tfalign.demo.ml.LandmarkEstimator
import org.tfalign.demo.ml.ModelCatalog

/**
 * On the phone: every bundled model that the export's golden landmarks describe (same model name and weights)
 * reproduces the golden points from the golden crop PNG, through the app's whole path (crop with the identity box,
 * normalise, quantize, LiteRT, decode), on every delegate the phone supports, within the golden's tolerance for
 * the model's export mode. Run with `./gradlew connectedAndroidTest`; not run in this repository (no device).
 */
@RunWith(AndroidJUnit4::class)
class GoldenLandmarksTest {
    private val instrumentation = InstrumentationRegistry.getInstrumentation()

    @Test
    fun bundledModelsReproduceTheGoldenPoints() {
        val testAssets = instrumentation.context.assets
        val name = "landmarks_mobile_two_stage.json"
        val golden = JsonNode(Json.parse(testAssets.open(name).bufferedReader().use { it.readText() }, name), name, "")
        val options = BitmapFactory.Options().apply { inScaled = false; inPremultiplied = false }
        val png = testAssets.open(golden["crop_png"].string()).use { BitmapFactory.decodeStream(it, null, options) }!!
        val w = png.width
        val h = png.height
        val argb = IntArray(w * h).also { png.getPixels(it, 0, w, 0, 0, w, h) }
        val b = golden["identity_box"].doubles()
        val box = FaceBox(b[0], b[1], b[2], b[3])

        val appAssets = instrumentation.targetContext.assets
        val models = ModelCatalog.list(appAssets).first.filter { entry ->
            val model = entry.contract.raw["model"] as? Map<*, *>
            model?.get("name") == golden["model"].string() && model["weights"] == golden["weights"].string()
        }
        assumeTrue("no bundled model matches the golden (${golden["model"].string()}, ${golden["weights"].string()})",
                models.isNotEmpty())
        for (entry in models) {
            val mode = (entry.contract.raw["model"] as Map<*, *>)["quantization"] as String
            val expected = golden["expected"][mode].list().flatMap { it.doubles().toList() }
            val tolerancePx = golden["tolerance"][mode].double() * w
            for (delegate in InterpreterFactory.DELEGATES) {
                val estimator = try {
                    LandmarkEstimator(entry, ModelCatalog.map(appAssets, entry), RuntimeConfig(delegate, 1.takeIf {
                        delegate == "xnnpack" || delegate == "cpu"
                    }))
                } catch (e: Exception) {
                    continue  // a delegate this phone does not offer
                }
                try {
                    val points = estimator.estimate(argb, w, h, box).points
                    for (j in expected.indices) {
                        val want = expected[j] * w - 0.5  // identity box: image pixel = u × W - 0.5
                        assertTrue("${entry.name} on $delegate: value $j is ${points[j]}, golden $want ± $tolerancePx",
                                Math.abs(points[j] - want) <= tolerancePx)
                    }
                } finally {
                    estimator.close()
                }
            }
        }
    }
}
