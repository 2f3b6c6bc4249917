// tfalign Android demo: `core` is plain Kotlin/JVM (its tests also run without Gradle: core/run_tests.sh),
// `app` is the thin Android layer (CameraX, ML Kit face detection, LiteRT).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "tfalign-android-demo"
include(":core", ":app")
