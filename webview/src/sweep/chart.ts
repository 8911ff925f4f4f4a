/**
 * The efficiency chart: data-parallel speedup against device count (the sweep's `scaling`),
 * one circle per measured plan, one square per predicted point, the Amdahl curve of the
 * serial fraction fitted to the predictions, and the ideal N× line. SVG drawn with d3
 * (a handful of marks, so SVG rather than the timeline's canvas); colours are CSS classes
 * on theme variables (sweep.css), so a theme change restyles it without a redraw.
 */
import { axisBottom, axisLeft } from 'd3-axis';
import { scaleLinear } from 'd3-scale';
import { select } from 'd3-selection';
import { line } from 'd3-shape';
import type { SweepScaling } from '../../../src/profiler/sweep/schema';
import { curvePoints } from './cells';

const SVG_NS = 'http://www.w3.org/2000/svg';

/** The chart as an SVG element, or null when the sweep has no scaling data. */
export function renderChart(s: SweepScaling | null): SVGSVGElement | null {
  if (!s || (s.measured.length === 0 && s.predicted.length === 0)) return null;
  const W = 560;
  const H = 320;
  const m = { l: 48, r: 170, t: 16, b: 40 };
  const maxN = Math.max(2, ...s.measured.map((p) => p.devices), ...s.predicted.map((p) => p.devices));
  const maxS = Math.max(1, ...s.measured.map((p) => p.speedup), ...s.predicted.map((p) => p.speedup)) * 1.1;
  const x = scaleLinear().domain([1, maxN]).range([m.l, W - m.r]);
  const y = scaleLinear().domain([0, maxS]).range([H - m.b, m.t]);
  const svg = select(document.createElementNS(SVG_NS, 'svg') as SVGSVGElement)
    .attr('id', 'px-sweep-chart')
    .attr('class', 'px-sweep-chart')
    .attr('width', W)
    .attr('height', H)
    .attr('role', 'img')
    .attr('aria-label', `speedup against device count, data parallel, batch ${s.batch}`);
  svg
    .append('g')
    .attr('class', 'axis x')
    .attr('transform', `translate(0,${H - m.b})`)
    .call(axisBottom(x).ticks(Math.min(maxN - 1, 10)).tickFormat((n) => String(n)));
  svg
    .append('g')
    .attr('class', 'axis y')
    .attr('transform', `translate(${m.l},0)`)
    .call(axisLeft(y).ticks(5).tickFormat((v) => `${Number(v).toFixed(1)}×`));
  svg.append('text').attr('class', 'label').attr('x', (m.l + W - m.r) / 2).attr('y', H - 6).attr('text-anchor', 'middle').text('devices');
  const ideal = Math.min(maxN, maxS);
  svg.append('line').attr('class', 'ideal').attr('x1', x(1)).attr('y1', y(1)).attr('x2', x(ideal)).attr('y2', y(ideal));
  const curve = curvePoints(s, maxN);
  if (curve.length >= 2) {
    svg
      .append('path')
      .attr('class', 'curve')
      .attr('data-serial-fraction', s.predictedSerialFraction === null ? '' : s.predictedSerialFraction.toFixed(4))
      .attr('d', line<[number, number]>().x((d) => x(d[0])).y((d) => y(d[1]))(curve) ?? '');
  }
  svg
    .selectAll('rect.predicted')
    .data(s.predicted)
    .join('rect')
    .attr('class', 'predicted')
    .attr('data-devices', (p) => p.devices)
    .attr('x', (p) => x(p.devices) - 4)
    .attr('y', (p) => y(p.speedup) - 4)
    .attr('width', 8)
    .attr('height', 8)
    .append('title')
    .text((p) => `predicted, ${p.devices} devices: ${p.speedup.toFixed(2)}×`);
  svg
    .selectAll('circle.measured')
    .data(s.measured)
    .join('circle')
    .attr('class', 'measured')
    .attr('data-devices', (p) => p.devices)
    .attr('cx', (p) => x(p.devices))
    .attr('cy', (p) => y(p.speedup))
    .attr('r', 5)
    .append('title')
    .text((p) => `measured, ${p.devices} devices: ${p.speedup.toFixed(2)}×`);
  // Legend: every mark named.
  const lx = W - m.r + 14;
  const legend = svg.append('g').attr('class', 'legend');
  legend.append('circle').attr('class', 'measured').attr('cx', lx).attr('cy', m.t + 8).attr('r', 5);
  legend.append('text').attr('x', lx + 12).attr('y', m.t + 12).text('measured');
  legend.append('rect').attr('class', 'predicted').attr('x', lx - 4).attr('y', m.t + 24).attr('width', 8).attr('height', 8);
  legend.append('text').attr('x', lx + 12).attr('y', m.t + 32).text('predicted');
  legend.append('line').attr('class', 'curve').attr('x1', lx - 7).attr('y1', m.t + 48).attr('x2', lx + 7).attr('y2', m.t + 48);
  const f = s.predictedSerialFraction;
  legend.append('text').attr('x', lx + 12).attr('y', m.t + 52).text(f === null ? 'predicted curve' : `Amdahl, serial f = ${f.toFixed(3)}`);
  legend.append('line').attr('class', 'ideal').attr('x1', lx - 7).attr('y1', m.t + 68).attr('x2', lx + 7).attr('y2', m.t + 68);
  legend.append('text').attr('x', lx + 12).attr('y', m.t + 72).text('ideal (N×)');
  if (s.measuredSerialFraction !== null) legend.append('text').attr('class', 'muted').attr('x', lx - 7).attr('y', m.t + 96).text(`measured f = ${s.measuredSerialFraction.toFixed(3)}`);
  return svg.node();
}
