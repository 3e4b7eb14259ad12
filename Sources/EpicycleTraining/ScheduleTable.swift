import EpicycleSchedules
import Foundation

/// Each knob's value per epoch over a recipe's whole cycle, as text and as an SVG plot.
public struct ScheduleTable: Sendable {
    /// Epoch labels ("pretrain 1", …) and, per knob, one value per epoch: the value at the epoch's
    /// first step, as training applies it and logs it in `metrics.csv`.
    public var epochs: [String]
    public var values: [(knob: Knob, values: [Double])]
    /// The optimizer steps of each epoch (per-step schedules count these).
    public var steps: [Int]
    /// Where fine-tuning starts (an epoch index), if the recipe has both phases.
    public var finetuneStart: Int?
    /// How values were derived, printed under the table.
    public var notes: [String]

    public var text: String {
        let names = ["steps"] + values.map(\.knob.rawValue)
        let widths = names.map { max($0.count, 10) }
        var lines = ["epoch".padding(toLength: 14, withPad: " ", startingAt: 0)
            + zip(names, widths).map { $0.padding(toLength: $1 + 2, withPad: " ", startingAt: 0) }.joined()]
        for (row, label) in epochs.enumerated() {
            let cells = [String(steps[row])] + values.map { formatKnobValue($0.values[row]) }
            lines.append(label.padding(toLength: 14, withPad: " ", startingAt: 0) + zip(cells, widths).map { cell, width in
                cell.padding(toLength: width + 2, withPad: " ", startingAt: 0)
            }.joined())
        }
        return (lines + notes).joined(separator: "\n")
    }

    public var svg: String {
        let x = (0..<epochs.count).map { Double($0 + 1) }
        let markers = finetuneStart.map { [(x: Double($0) + 0.5, label: "fine-tune")] } ?? []
        let charts = values.map { entry in
            LineChart(title: entry.knob.rawValue, xLabel: "epoch", series: [.init(name: "", x: x, y: entry.values)],
                      markers: markers, width: 360, height: 200)
        }
        return svgGrid(charts, columns: 2)
    }
}

private func formatKnobValue(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e6 ? String(Int(value)) : String(format: "%.4g", value)
}

/// `epicycle schedule`: the knob values the recipe will use, epoch by epoch, over the joint cycle.
public func scheduleTable(recipe source: RecipeSource) throws -> ScheduleTable {
    let prepared = try PreparedRecipe(source, options: RunOptions())
    let recipe = prepared.recipe
    var phases: [(Phase, Int)] = []
    if let pretrain = recipe.pretrain { phases.append((.pretrain, pretrain.epochs)) }
    if let finetune = recipe.finetune { phases.append((.finetune, finetune.epochs)) }
    let cycle = prepared.jointCycle
    for (phase, _) in phases { try prepared.validateKnobs(phase, cycle: cycle) }

    let knobs = Set(phases.flatMap { recipe.knobs(for: $0.0).schedules.keys }).sorted()
    var labels: [String] = []
    var columns = [Knob: [Double]]()
    for (index, (phase, epochs)) in phases.enumerated() {
        let knobSchedules = recipe.knobs(for: phase)
        let inFinetuneHalf = index == 1
        for epoch in 0..<epochs {
            labels.append("\(phase.rawValue) \(epoch + 1)")
            let position = inFinetuneHalf ? cycle.finetuningPosition(epoch: epoch) : cycle.pretrainingPosition(epoch: epoch)
            let values = knobSchedules.values(at: position, in: cycle)
            for knob in knobs { columns[knob, default: []].append(values[knob] ?? .nan) }
        }
    }
    let batchSizeScheduled = phases.contains { phase in
        if case .constant = recipe.knobs(for: phase.0).schedules[.batchSize]! { return false }
        return true
    }
    var notes = batchSizeScheduled
        ? ["batch_size: the schedule's value rounded half away from zero (at least 1), as training uses it"] : []
    let focalMixSet = ([recipe.knobs] + [recipe.pretrain?.knobs, recipe.finetune?.knobs].compactMap { $0 })
        .contains { $0.schedules[.focalMix] != nil }
    if recipe.loss.kind == .cyclicalFocal && !focalMixSet {
        notes.append("focal_mix: default \(Knob.defaultFocalMix), ξ = 1 − δ(t) as in Smith's cyclical focal loss")
    }
    let ends = phases.enumerated().map { index, phase in
        let (knob, epochs) = recipe.knobs(for: phase.0).cycleEnds(of: index == 0 ? .pretrain : .finetune, in: cycle,
                                                                  following: recipe.cycleEndsOf)
        return "\(phase.0.rawValue) " + epochs.map { String($0 + 1) }.joined(separator: ", ") + " (\(knob.rawValue))"
    }
    notes.append("cycle ends (snapshots, SWA, tradeoff points) after epochs: " + ends.joined(separator: "; "))
    return ScheduleTable(epochs: labels, values: knobs.map { ($0, columns[$0]!) }, steps: cycle.epochSteps,
                         finetuneStart: phases.count == 2 ? phases[0].1 : nil, notes: notes)
}
