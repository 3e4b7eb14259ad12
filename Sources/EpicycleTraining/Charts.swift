import Foundation

/// A line chart rendered as self-contained SVG (no scripts, no fonts to fetch), for schedules and
/// learning curves.
public struct LineChart: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var x: [Double]
        public var y: [Double]
        /// Lower and upper edges of a shaded band (e.g. mean ± std over seeds), same length as `x`.
        public var band: (lower: [Double], upper: [Double])?

        public init(name: String, x: [Double], y: [Double], band: (lower: [Double], upper: [Double])? = nil) {
            self.name = name
            self.x = x
            self.y = y
            self.band = band
        }
    }

    public var title: String
    public var xLabel: String
    public var series: [Series]
    /// Dashed vertical lines with a label, e.g. the end of pretraining. A marker is a boundary: curves
    /// step there (hold, then jump) instead of ramping across it, as the values do, unless
    /// `markersAreBoundaries` is false (reference lines such as suggested bounds).
    public var markers: [(x: Double, label: String)]
    public var markersAreBoundaries: Bool
    public var width: Double
    public var height: Double
    /// The base of a logarithmic x axis (2 for budgets that double, 10 for learning rates); nil for a
    /// linear one. On a logarithmic axis, points at x ≤ 0 are left out.
    public var logXBase: Double?

    public init(title: String, xLabel: String, series: [Series], markers: [(x: Double, label: String)] = [],
                width: Double = 420, height: Double = 220, logXBase: Double? = nil, markersAreBoundaries: Bool = true) {
        precondition(logXBase.map { $0 > 1 } ?? true, "LineChart: a logarithmic axis needs a base above 1")
        self.title = title
        self.xLabel = xLabel
        self.series = series
        self.markers = markers
        self.width = width
        self.height = height
        self.logXBase = logXBase
        self.markersAreBoundaries = markersAreBoundaries
    }

    /// Where `x` sits along the axis: itself, or its logarithm (NaN for x ≤ 0) on a logarithmic axis.
    private func axisX(_ x: Double) -> Double {
        guard let logXBase else { return x }
        return x > 0 ? log(x) / log(logXBase) : .nan
    }

    /// Colour-blind-safe palette (Okabe & Ito 2008).
    static let palette = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

    /// The chart as an `<svg>` element placed at (`left`, `top`), to embed in a larger SVG or HTML.
    public func svgElement(left: Double = 0, top: Double = 0) -> String {
        // Marker labels get a row of their own above the plot, clear of the title and of the curves.
        let (marginLeft, marginRight, marginTop, marginBottom) = (56.0, 12.0, markers.isEmpty ? 24.0 : 36.0, 40.0)
        let plotWidth = width - marginLeft - marginRight, plotHeight = height - marginTop - marginBottom
        let xs = (series.flatMap(\.x) + markers.map(\.x)).map(axisX).filter(\.isFinite)
        var ys = series.flatMap(\.y).filter(\.isFinite)
        for s in series { if let band = s.band { ys += (band.lower + band.upper).filter(\.isFinite) } }
        let (xMin, xMax) = padded(xs.min() ?? 0, xs.max() ?? 1, margin: 0)
        let (yMin, yMax) = padded(ys.min() ?? 0, ys.max() ?? 1, margin: 0.06)
        // Positions on the axis (`axisX`), as `xMin`/`xMax` and the ticks are.
        func axisPosition(_ x: Double) -> Double { marginLeft + (x - xMin) / (xMax - xMin) * plotWidth }
        func px(_ x: Double) -> Double { axisPosition(axisX(x)) }
        func py(_ y: Double) -> Double { marginTop + (1 - (y - yMin) / (yMax - yMin)) * plotHeight }

        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(width))\" height=\"\(f(height))\" "
            + "viewBox=\"0 0 \(f(width)) \(f(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        out += "<text x=\"\(f(marginLeft))\" y=\"15\" font-size=\"12\" font-weight=\"bold\">\(escape(title))</text>\n"
        out += "<rect x=\"\(f(marginLeft))\" y=\"\(f(marginTop))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" fill=\"none\" stroke=\"#999\"/>\n"
        for tick in ticks(yMin, yMax) {
            out += "<line x1=\"\(f(marginLeft))\" x2=\"\(f(marginLeft + plotWidth))\" y1=\"\(f(py(tick)))\" y2=\"\(f(py(tick)))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(f(marginLeft - 4))\" y=\"\(f(py(tick) + 4))\" text-anchor=\"end\">\(label(tick))</text>\n"
        }
        // Epochs are whole numbers: no ticks between them; a logarithmic axis ticks whole powers of its base.
        let wholeX = logXBase != nil || xs.allSatisfy { $0 == $0.rounded() }
        for tick in ticks(xMin, xMax, minimumStep: wholeX ? 1 : 0) {
            let text = logXBase.map { label(pow($0, tick)) } ?? label(tick)
            out += "<text x=\"\(f(axisPosition(tick)))\" y=\"\(f(marginTop + plotHeight + 14))\" text-anchor=\"middle\">\(text)</text>\n"
        }
        out += "<text x=\"\(f(marginLeft + plotWidth / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\" fill=\"#555\">\(escape(xLabel))</text>\n"
        for marker in markers {
            guard axisX(marker.x).isFinite else { continue }
            out += "<line x1=\"\(f(px(marker.x)))\" x2=\"\(f(px(marker.x)))\" y1=\"\(f(marginTop))\" y2=\"\(f(marginTop + plotHeight))\" "
                + "stroke=\"#777\" stroke-dasharray=\"4 3\"/><text x=\"\(f(px(marker.x) + 3))\" y=\"\(f(marginTop - 4))\" fill=\"#555\">\(escape(marker.label))</text>\n"
        }
        for (index, s) in series.enumerated() {
            let colour = Self.palette[index % Self.palette.count]
            if let band = s.band {
                let upper = zip(s.x, band.upper).filter { axisX($0.0).isFinite }.map { "\(f(px($0))),\(f(py($1)))" }
                let lower = zip(s.x, band.lower).filter { axisX($0.0).isFinite }.reversed().map { "\(f(px($0))),\(f(py($1)))" }
                out += "<polygon class=\"band\" points=\"\((upper + lower).joined(separator: " "))\" fill=\"\(colour)\" fill-opacity=\"0.18\" stroke=\"none\"/>\n"
            }
            let points = steppedAtMarkers(zip(s.x, s.y).filter { axisX($0.0).isFinite && $0.1.isFinite }).map { "\(f(px($0))),\(f(py($1)))" }
            out += "<polyline class=\"curve\" data-series=\"\(escape(s.name))\" points=\"\(points.joined(separator: " "))\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.8\"/>\n"
        }
        if series.count > 1 || !(series.first?.name.isEmpty ?? true) {
            for (index, s) in series.enumerated() {
                let y = marginTop + 8 + Double(index) * 14
                let x = marginLeft + plotWidth - 130
                out += "<rect x=\"\(f(x))\" y=\"\(f(y - 7))\" width=\"10\" height=\"3\" fill=\"\(Self.palette[index % Self.palette.count])\"/>"
                out += "<text x=\"\(f(x + 14))\" y=\"\(f(y - 2))\">\(escape(s.name))</text>\n"
            }
        }
        return out + "</svg>\n"
    }

    /// A standalone SVG document.
    public var svg: String { svgElement() }

    /// The points with a step at every marker that lies between two neighbours: the earlier value
    /// held up to the marker, then a vertical jump to the later one.
    func steppedAtMarkers(_ points: [(Double, Double)]) -> [(Double, Double)] {
        guard markersAreBoundaries else { return points }
        var stepped: [(Double, Double)] = []
        for (index, point) in points.enumerated() {
            if index > 0 {
                let previous = points[index - 1]
                for marker in markers.map(\.x).sorted() where previous.0 < marker && marker < point.0 {
                    stepped += [(marker, previous.1), (marker, point.1)]
                }
            }
            stepped.append(point)
        }
        return stepped
    }
}

/// Charts laid out in a grid, as one SVG document.
public func svgGrid(_ charts: [LineChart], columns: Int) -> String {
    guard let first = charts.first else { return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"0\" height=\"0\"/>\n" }
    let rows = (charts.count + columns - 1) / columns
    var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(f(first.width * Double(min(columns, charts.count))))\" "
        + "height=\"\(f(first.height * Double(rows)))\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    for (index, chart) in charts.enumerated() {
        out += chart.svgElement(left: Double(index % columns) * first.width, top: Double(index / columns) * first.height)
    }
    return out + "</svg>\n"
}

private func padded(_ low: Double, _ high: Double, margin: Double) -> (Double, Double) {
    if high - low < 1e-12 {
        let half = max(abs(low) * 0.1, 1e-3)
        return (low - half, high + half)
    }
    let pad = (high - low) * margin
    return (low - pad, high + pad)
}

/// Round tick positions: 1, 2 or 5 times a power of ten, about five of them, at least `minimumStep` apart.
private func ticks(_ low: Double, _ high: Double, minimumStep: Double = 0) -> [Double] {
    let raw = max((high - low) / 5, minimumStep)
    let magnitude = pow(10, floor(log10(raw)))
    let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
    var values: [Double] = []
    var tick = ceil(low / step) * step
    while tick <= high + step * 1e-9 {
        values.append(abs(tick) < step * 1e-9 ? 0 : tick)
        tick += step
    }
    return values
}

private func label(_ value: Double) -> String {
    if value == 0 { return "0" }
    if abs(value) >= 1e4 || abs(value) < 1e-3 { return String(format: "%.0e", value) }
    return String(format: "%g", (value * 1e6).rounded() / 1e6)
}

private func f(_ value: Double) -> String { String(format: "%.1f", value) }

func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
