package org.tfalign.core

import java.util.Locale

/**
 * A small JSON reader/writer for contracts, golden files and benchmark reports.
 *
 * The core has no dependencies so that it builds with a bare `kotlinc` and runs its tests without Maven; Android's
 * org.json is not available on a plain JVM. Objects parse to [LinkedHashMap] (key order kept, so reports are
 * written in a stable order), arrays to [List], numbers to [Double] (or [Long] when integral and written without a
 * fraction or exponent), and `null` to `null`.
 */
class JsonException(message: String) : IllegalArgumentException(message)

object Json {
    /** Parse [text]; errors name [source] (a file name) and the character offset. */
    fun parse(text: String, source: String = "<json>"): Any? {
        val p = Parser(text, source)
        p.skipWs()
        val v = p.value()
        p.skipWs()
        if (p.pos != text.length) throw p.error("unexpected trailing content")
        return v
    }

    /** Serialise maps, lists, numbers, strings, booleans and null; non-finite numbers are an error. */
    fun write(value: Any?, indent: String = "  "): String {
        val sb = StringBuilder()
        writeValue(sb, value, indent, "")
        return sb.append('\n').toString()
    }

    private fun writeValue(sb: StringBuilder, v: Any?, indent: String, cur: String) {
        when (v) {
            null -> sb.append("null")
            is String -> writeString(sb, v)
            is Boolean -> sb.append(v.toString())
            is Int, is Long, is Short, is Byte -> sb.append(v.toString())
            is Number -> {
                val d = v.toDouble()
                if (d.isNaN() || d.isInfinite()) throw JsonException("cannot write non-finite number $d as JSON")
                sb.append(if (d == Math.rint(d) && Math.abs(d) < 1e15) d.toLong().toString() + ".0" else d.toString())
            }
            is Map<*, *> -> {
                if (v.isEmpty()) { sb.append("{}"); return }
                val next = cur + indent
                sb.append("{\n")
                var first = true
                for ((k, value) in v) {
                    if (!first) sb.append(",\n")
                    first = false
                    sb.append(next)
                    writeString(sb, k.toString())
                    sb.append(": ")
                    writeValue(sb, value, indent, next)
                }
                sb.append('\n').append(cur).append('}')
            }
            is Iterable<*> -> {
                val items = v.toList()
                if (items.isEmpty()) { sb.append("[]"); return }
                val next = cur + indent
                sb.append("[\n")
                items.forEachIndexed { i, item ->
                    if (i > 0) sb.append(",\n")
                    sb.append(next)
                    writeValue(sb, item, indent, next)
                }
                sb.append('\n').append(cur).append(']')
            }
            is DoubleArray -> writeValue(sb, v.toList(), indent, cur)
            is FloatArray -> writeValue(sb, v.map { it.toDouble() }, indent, cur)
            is IntArray -> writeValue(sb, v.toList(), indent, cur)
            else -> throw JsonException("cannot write ${v.javaClass.name} as JSON")
        }
    }

    private fun writeString(sb: StringBuilder, s: String) {
        sb.append('"')
        for (c in s) {
            when (c) {
                '"' -> sb.append("\\\"")
                '\\' -> sb.append("\\\\")
                '\n' -> sb.append("\\n")
                '\r' -> sb.append("\\r")
                '\t' -> sb.append("\\t")
                else -> if (c < ' ') sb.append(String.format(Locale.ROOT, "\\u%04x", c - '\u0000')) else sb.append(c)
            }
        }
        sb.append('"')
    }

    private class Parser(val s: String, val source: String) {
        var pos = 0

        fun error(what: String) = JsonException("$source: invalid JSON at offset $pos: $what")

        fun skipWs() {
            while (pos < s.length && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' || s[pos] == '\t')) pos++
        }

        fun value(): Any? {
            if (pos >= s.length) throw error("unexpected end of input")
            return when (s[pos]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> num()
            }
        }

        private fun literal(word: String, v: Any?): Any? {
            if (!s.startsWith(word, pos)) throw error("unexpected character '${s[pos]}'")
            pos += word.length
            return v
        }

        private fun obj(): Map<String, Any?> {
            val m = LinkedHashMap<String, Any?>()
            pos++
            skipWs()
            if (pos < s.length && s[pos] == '}') { pos++; return m }
            while (true) {
                skipWs()
                if (pos >= s.length || s[pos] != '"') throw error("expected a string key")
                val k = str()
                skipWs()
                if (pos >= s.length || s[pos] != ':') throw error("expected ':' after key \"$k\"")
                pos++
                skipWs()
                m[k] = value()
                skipWs()
                if (pos >= s.length) throw error("unterminated object")
                if (s[pos] == ',') { pos++; continue }
                if (s[pos] == '}') { pos++; return m }
                throw error("expected ',' or '}'")
            }
        }

        private fun arr(): List<Any?> {
            val l = ArrayList<Any?>()
            pos++
            skipWs()
            if (pos < s.length && s[pos] == ']') { pos++; return l }
            while (true) {
                skipWs()
                l.add(value())
                skipWs()
                if (pos >= s.length) throw error("unterminated array")
                if (s[pos] == ',') { pos++; continue }
                if (s[pos] == ']') { pos++; return l }
                throw error("expected ',' or ']'")
            }
        }

        private fun str(): String {
            val sb = StringBuilder()
            pos++
            while (true) {
                if (pos >= s.length) throw error("unterminated string")
                val c = s[pos++]
                when (c) {
                    '"' -> return sb.toString()
                    '\\' -> {
                        if (pos >= s.length) throw error("unterminated escape")
                        when (val e = s[pos++]) {
                            '"', '\\', '/' -> sb.append(e)
                            'b' -> sb.append('\b')
                            'f' -> sb.append('\u000C')
                            'n' -> sb.append('\n')
                            'r' -> sb.append('\r')
                            't' -> sb.append('\t')
                            'u' -> {
                                if (pos + 4 > s.length) throw error("short \\u escape")
                                val code = s.substring(pos, pos + 4).toIntOrNull(16) ?: throw error("bad \\u escape")
                                sb.append(code.toChar())
                                pos += 4
                            }
                            else -> throw error("bad escape '\\$e'")
                        }
                    }
                    else -> sb.append(c)
                }
            }
        }

        private fun num(): Any {
            val start = pos
            if (pos < s.length && s[pos] == '-') pos++
            while (pos < s.length && (s[pos] in '0'..'9' || s[pos] == '.' || s[pos] == 'e' || s[pos] == 'E' ||
                        s[pos] == '+' || s[pos] == '-')) pos++
            val t = s.substring(start, pos)
            if (t.length == 0 || t == "-") throw error("unexpected character '${s[start]}'")
            val integral = t.none { it == '.' || it == 'e' || it == 'E' }
            if (integral) t.toLongOrNull()?.let { return it }
            return t.toDoubleOrNull() ?: throw error("bad number '$t'")
        }
    }
}

/** Typed access to parsed JSON with errors that name the file and the field path (e.g. `input.mean[2]`). */
class JsonNode(val value: Any?, val source: String, val path: String) {
    private fun fail(what: String): Nothing = throw ContractException("$source: $path $what")

    private fun describe(v: Any?) = when (v) {
        null -> "null"
        is String -> "\"$v\""
        is Map<*, *> -> "an object"
        is List<*> -> "an array"
        else -> v.toString()
    }

    private fun childPath(key: String) = if (path.length == 0) key else "$path.$key"

    fun has(key: String): Boolean = (value as? Map<*, *>)?.let { it.containsKey(key) && it[key] != null } ?: false

    operator fun get(key: String): JsonNode {
        val m = value as? Map<*, *> ?: fail("must be an object, got ${describe(value)}")
        if (!m.containsKey(key)) throw ContractException("$source: missing required field ${childPath(key)}")
        return JsonNode(m[key], source, childPath(key))
    }

    fun opt(key: String): JsonNode? = if (has(key)) get(key) else null

    fun list(): List<JsonNode> {
        val l = value as? List<*> ?: fail("must be an array, got ${describe(value)}")
        return l.mapIndexed { i, v -> JsonNode(v, source, "$path[$i]") }
    }

    fun string(): String = value as? String ?: fail("must be a string, got ${describe(value)}")

    fun double(): Double {
        val n = value as? Number ?: fail("must be a number, got ${describe(value)}")
        return n.toDouble()
    }

    fun int(): Int {
        val d = double()
        if (d != Math.rint(d) || Math.abs(d) > Int.MAX_VALUE) fail("must be an integer, got ${describe(value)}")
        return d.toInt()
    }

    fun positiveInt(): Int = int().also { if (it < 1) fail("must be >= 1, got $it") }

    fun positiveDouble(): Double = double().also { if (!(it > 0.0) || it.isInfinite()) fail("must be > 0, got $it") }

    /** One of [allowed]; the error lists them. */
    fun oneOf(vararg allowed: String): String {
        val s = string()
        if (s !in allowed) fail("is \"$s\"; expected one of ${allowed.joinToString(", ") { "\"$it\"" }}")
        return s
    }

    fun doubles(): DoubleArray = list().map { it.double() }.toDoubleArray()
    fun ints(): IntArray = list().map { it.int() }.toIntArray()
}
