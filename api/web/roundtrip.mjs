// Sets nd73 properties on elements of a BPMN document the way the modeler's properties panel
// does (src/nd73.js on bpmn-moddle with the project's descriptor) and prints the XML.
// Bundled by esbuild for node (tests/test_designer_studio.py), then run:
// node roundtrip.mjs file.bpmn elementId name=value [elementId name=value ...]
import { readFileSync } from 'node:fs';
import { BpmnModdle } from 'bpmn-moddle';
import { descriptor, propertyChanges, apply } from './src/nd73.js';

const [file, ...pairs] = process.argv.slice(2);
const moddle = new BpmnModdle({ nd73: descriptor });
const { rootElement, elementsById, warnings } = await moddle.fromXML(readFileSync(file, 'utf8'));
if (warnings.length) { console.error(warnings.map((w) => w.message).join('\n')); process.exit(2); }
for (let i = 0; i < pairs.length; i += 2) {
  const element = elementsById[pairs[i]];
  if (!element) { console.error(`no element ${pairs[i]}`); process.exit(2); }
  const at = pairs[i + 1].indexOf('=');
  apply(propertyChanges(element, pairs[i + 1].slice(0, at), pairs[i + 1].slice(at + 1),
                        (type, attrs) => moddle.create(type, attrs)));
}
const { xml } = await moddle.toXML(rootElement, { format: true });
process.stdout.write(xml);
