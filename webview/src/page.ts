/**
 * The page around the timeline: a header (title, status, search, the buttons that show the
 * operator table and the side panel, the legend), the error box, the summary strip, the
 * timeline with the operator table under it, and the side panel (steps of a comparison,
 * findings, selected range).
 */
import { el } from './dom';
import { Legend } from './legend';

/** The page's fixed parts. */
export interface Page {
  app: HTMLElement;
  title: HTMLElement;
  status: HTMLElement;
  legend: Legend;
  /** Where the search box goes. */
  tools: HTMLElement;
  opsToggle: HTMLButtonElement;
  sideToggle: HTMLButtonElement;
  errorBox: HTMLElement;
  summary: HTMLElement;
  tlRoot: HTMLElement;
  opsBox: HTMLElement;
  side: HTMLElement;
  findingsBox: HTMLElement;
  stepsBox: HTMLElement;
  rangeBox: HTMLElement;
}

/** A button that shows and hides `target`, saying so through aria-expanded and its text. */
function toggle(label: string, target: HTMLElement, open: boolean, onChange?: (open: boolean) => void): HTMLButtonElement {
  const b = el('button', 'px-toggle');
  b.type = 'button';
  const set = (v: boolean): void => {
    target.hidden = !v;
    b.setAttribute('aria-expanded', String(v));
    b.textContent = `${v ? 'Hide' : 'Show'} ${label}`;
  };
  set(open);
  b.setAttribute('aria-controls', target.id);
  b.addEventListener('click', () => {
    set(target.hidden);
    onChange?.(!target.hidden);
  });
  return b;
}

export function buildPage(onOpsToggle: (open: boolean) => void): Page {
  const app = el('div', 'px-app');
  const header = el('header', 'px-header');
  const title = el('h1', 'px-title', 'Parallax timeline');
  title.dir = 'auto';
  const status = el('span', 'px-status', 'Waiting for a trace…');
  status.setAttribute('role', 'status');
  const tools = el('div', 'px-tools');
  const legend = new Legend();
  const errorBox = el('div', 'px-error');
  errorBox.setAttribute('role', 'alert');
  errorBox.hidden = true;
  const summary = el('section', 'px-summary');
  summary.setAttribute('aria-label', 'Summary');
  const main = el('div', 'px-main');
  const center = el('div', 'px-center');
  const tlRoot = el('div');
  const opsBox = el('section', 'px-ops');
  opsBox.id = 'px-ops';
  opsBox.setAttribute('aria-label', 'Operator statistics');
  center.append(tlRoot, opsBox);
  const side = el('aside', 'px-side');
  side.id = 'px-side';
  const findingsBox = el('section', 'px-findings-box');
  findingsBox.setAttribute('aria-label', 'Findings');
  const stepsBox = el('section', 'px-steps-box');
  stepsBox.setAttribute('aria-label', 'Steps compared');
  stepsBox.hidden = true;
  const rangeBox = el('section', 'px-range-box');
  rangeBox.setAttribute('aria-label', 'Selected range');
  side.append(stepsBox, findingsBox, rangeBox);
  main.append(center, side);
  const opsToggle = toggle('operators', opsBox, false, onOpsToggle);
  const sideToggle = toggle('findings', side, true);
  tools.append(opsToggle, sideToggle);
  header.append(title, status, tools, legend.root);
  app.append(header, errorBox, summary, main);
  document.body.append(app);
  return { app, title, status, legend, tools, opsToggle, sideToggle, errorBox, summary, tlRoot, opsBox, side, findingsBox, stepsBox, rangeBox };
}
