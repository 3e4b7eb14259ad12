import EpicycleTraining
import Foundation
import Testing

/// Charts draw a phase boundary as it happens: the curve holds its value up to the marker and jumps
/// there, and the marker's label sits above the plot, where no curve runs.
@Suite struct ChartTests {
    /// The numbers of the first `<tag … name="…">` attribute.
    static func attribute(_ name: String, of tag: String, in svg: String) -> String? {
        guard let element = svg.components(separatedBy: "<" + tag + " ").dropFirst().first else { return nil }
        return element.components(separatedBy: name + "=\"").dropFirst().first?.components(separatedBy: "\"").first
    }

    @Test func curvesStepAtMarkers() throws {
        let chart = LineChart(title: "batch_size", xLabel: "epoch", series: [.init(name: "", x: [1, 2, 3, 4], y: [128, 128, 50, 50])],
                              markers: [(x: 2.5, label: "fine-tune")])
        let svg = chart.svg
        let points = try #require(Self.attribute("points", of: "polyline", in: svg)).split(separator: " ").map { pair in
            pair.split(separator: ",").map { Double($0)! }
        }
        #expect(points.count == 6, "two extra points make the step: \(points)")
        #expect(points[2][0] == points[3][0], "a vertical jump at the marker")
        #expect(points[1][1] == points[2][1] && points[3][1] == points[4][1], "the values are held up to it and after it")
        #expect(points[2][0] > points[1][0] && points[3][0] < points[4][0])

        let plotTop = try #require(Self.attribute("y", of: "rect", in: svg).flatMap(Double.init))
        let label = try #require(svg.components(separatedBy: "fine-tune</text>").first?.components(separatedBy: "<text ").last)
        let labelY = try #require(label.components(separatedBy: "y=\"").dropFirst().first?.components(separatedBy: "\"").first.flatMap(Double.init))
        #expect(labelY < plotTop, "the label is above the plot area")
        let titleY = try #require(Self.attribute("y", of: "text", in: svg).flatMap(Double.init))
        #expect(labelY - titleY >= 11, "and below the title's line")
    }

    @Test func withoutMarkersTheCurveIsUntouched() throws {
        let chart = LineChart(title: "t", xLabel: "epoch", series: [.init(name: "", x: [1, 2, 3], y: [1, 2, 3])])
        let points = try #require(Self.attribute("points", of: "polyline", in: chart.svg)).split(separator: " ")
        #expect(points.count == 3)
    }
}
