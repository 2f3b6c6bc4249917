import TFAlignCore
import XCTest

final class OneEuroTests: XCTestCase {
    private func params(_ n: JSONNode) throws -> OneEuroParams {
        OneEuroParams(minCutoff: try n.get("min_cutoff").double(), beta: try n.get("beta").double(),
                      dCutoff: try n.get("d_cutoff").double())
    }

    func testDefaultsMatchTheSharedFile() throws {
        XCTAssertEqual(try params(Golden.json("one_euro.json").get("defaults")), OneEuroParams())
    }

    func testScalarFilterMatchesEveryVector() throws {
        let golden = try Golden.json("one_euro.json")
        let tol = try golden.get("tolerance").double()
        let cases = try golden.get("cases").list()
        XCTAssertFalse(cases.isEmpty)
        for c in cases {
            let name = try c.get("name").string()
            var f = OneEuroFilter(params: try params(c.get("params")))
            let ts = try c.get("timestamps_s").doubles(), xs = try c.get("inputs").doubles()
            let vs = try c.get("value_scale").doubles(), expected = try c.get("expected").doubles()
            for k in ts.indices {
                let y = f.filter(t: ts[k], x: xs[k], valueScale: vs[k])
                XCTAssertEqual(y, expected[k], accuracy: tol, "\(name) sample \(k)")
            }
        }
    }

    func testLandmarkSmootherMatchesVectors() throws {
        let golden = try Golden.json("one_euro.json")
        let tol = try golden.get("tolerance").double()
        for c in try golden.get("landmark_cases").list() {
            var s = LandmarkSmoother(params: try params(c.get("params")))
            let ts = try c.get("timestamps_s").doubles()
            let frames = try c.get("frames").list(), expected = try c.get("expected").list()
            for k in ts.indices {
                let pts = try frames[k].list().flatMap { try $0.doubles() }
                let out = s.smooth(t: ts[k], points: pts)
                let exp = try expected[k].doubles()
                for j in exp.indices { XCTAssertEqual(out[j], exp[j], accuracy: tol, "frame \(k) value \(j)") }
            }
        }
    }

    func testResetForgetsTheOldFace() {
        var f = OneEuroFilter()
        _ = f.filter(t: 0, x: 10)
        _ = f.filter(t: 0.1, x: 11)
        f.reset()
        XCTAssertEqual(f.filter(t: 0.2, x: 500), 500)
    }
}
