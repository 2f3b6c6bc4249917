// Plain Kotlin/JVM: no Android classes, so the same tests run in Gradle and with core/run_tests.sh.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    testImplementation("junit:junit:4.13.2")
}

tasks.test {
    // The golden vectors are shared with the Python and Swift tests.
    systemProperty("tfalign.golden", rootDir.resolve("../tests/golden").absolutePath)
}
