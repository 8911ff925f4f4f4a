/** The page around the timeline: header with title, status and legend; error box; summary; side panels. */
import { Legend, el } from './panels';

/** The page's fixed parts: header, error box, summary, timeline root and side panels. */
export interface Page {
  title: HTMLElement;
  status: HTMLElement;
  legend: Legend;
  errorBox: HTMLElement;
  summary: HTMLElement;
  tlRoot: HTMLElement;
  findingsBox: HTMLElement;
  rangeBox: HTMLElement;
}

export function buildPage(): Page {
  const app = el('div', 'px-app');
  const header = el('header', 'px-header');
  const title = el('h1', 'px-title', 'Parallax timeline');
  title.dir = 'auto';
  const status = el('span', 'px-status', 'Waiting for a trace…');
  status.setAttribute('role', 'status');
  const legend = new Legend();
  header.append(title, status, legend.root);
  const errorBox = el('div', 'px-error');
  errorBox.setAttribute('role', 'alert');
  errorBox.hidden = true;
  const summary = el('section', 'px-summary');
  summary.setAttribute('aria-label', 'Summary');
  const main = el('div', 'px-main');
  const tlRoot = el('div');
  const side = el('aside', 'px-side');
  const findingsBox = el('section', 'px-findings-box');
  findingsBox.setAttribute('aria-label', 'Findings');
  const rangeBox = el('section', 'px-range-box');
  rangeBox.setAttribute('aria-label', 'Selected range');
  side.append(findingsBox, rangeBox);
  main.append(tlRoot, side);
  app.append(header, errorBox, summary, main);
  document.body.append(app);
  return { title, status, legend, errorBox, summary, tlRoot, findingsBox, rangeBox };
}

