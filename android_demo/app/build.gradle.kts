plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.tfalign.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.tfalign.demo"
        minSdk = 26          // java.time for benchmark timestamps; CameraX needs 21
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
    }

    sourceSets {
        // The on-device test reads the golden landmarks shared with the Python and Swift tests.
        getByName("androidTest").assets.srcDir(rootProject.file("../tests/golden"))
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            signingConfig = signingConfigs.getByName("debug")
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
    androidResources {
        // Models are memory-mapped straight from the APK: they must be stored uncompressed.
        noCompress += "tflite"
    }
}

dependencies {
    implementation(project(":core"))

    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.core:core-ktx:1.13.1")

    val camerax = "1.4.1"
    implementation("androidx.camera:camera-core:$camerax")
    implementation("androidx.camera:camera-camera2:$camerax")
    implementation("androidx.camera:camera-lifecycle:$camerax")
    implementation("androidx.camera:camera-view:$camerax")

    // On-device face detector (bundled model: works offline).
    implementation("com.google.mlkit:face-detection:16.1.7")

    // LiteRT (formerly TensorFlow Lite): interpreter with XNNPACK, GPU and NNAPI delegates.
    val litert = "1.0.1"
    implementation("com.google.ai.edge.litert:litert:$litert")
    implementation("com.google.ai.edge.litert:litert-gpu:$litert")
    implementation("com.google.ai.edge.litert:litert-gpu-api:$litert")

    androidTestImplementation("androidx.test.ext:junit:1.2.1")
    androidTestImplementation("androidx.test:runner:1.6.2")
}

// Models are not committed: copy the export output into assets/models before every build.
val copyModels by tasks.registering(Exec::class) {
    description = "Copies *.tflite + *.contract.json from -PtfalignExport=DIR into src/main/assets/models"
    val export = rootProject.file(providers.gradleProperty("tfalignExport").getOrElse("../exports/default"))
    commandLine("bash", rootProject.file("scripts/copy_models.sh").absolutePath, export.absolutePath,
            file("src/main/assets/models").absolutePath)
}
tasks.named("preBuild") { dependsOn(copyModels) }
