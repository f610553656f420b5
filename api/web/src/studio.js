// The designer's modeler: bpmn-js with the properties panel, a provider for what the engine
// reads in the project's namespace (processes/nd73.moddle.json, processes/README.md) and a
// translate module fed with the page's dictionary. Bundled by esbuild (Makefile, vendor
// target) into api/static/vendor/studio.js as the global ``Nd73Studio``.
import Modeler from 'bpmn-js/lib/Modeler';
import {
  BpmnPropertiesPanelModule, BpmnPropertiesProviderModule, useService
} from 'bpmn-js-properties-panel';
import {
  ListGroup, SelectEntry, TextAreaEntry, TextFieldEntry, isSelectEntryEdited,
  isTextAreaEntryEdited, isTextFieldEntryEdited
} from '@bpmn-io/properties-panel';
import { h } from '@bpmn-io/properties-panel/preact';
import { useEffect, useState } from '@bpmn-io/properties-panel/preact/hooks';
import { getBusinessObject, is } from 'bpmn-js/lib/util/ModelUtil';

import {
  addExtensionChanges, descriptor, getProperty, notificationsOf, propertyChanges,
  removeExtensionChanges, validationsOf
} from './nd73.js';

var LOW_PRIORITY = 400;
var RECIPIENTS = ['candidates', 'proposer', 'assignee', 'assignee_head'];
var MOMENTS = ['complete', 'open'];
var CATEGORIES = ['case', 'reporting_cycle', 'called'];
var START_UNITS = ['optional', 'required'];

// --- translation -------------------------------------------------------------------------

// bpmn-js's own words and the panel's, from the page's dictionary (English when absent).
function translateModule(words) {
  words = words || {};
  function translate(template, replacements) {
    replacements = replacements || {};
    return (words[template] || template).replace(/{([^}]+)}/g, function (all, key) {
      return replacements[key] !== undefined ? replacements[key] : all;
    });
  }
  return { translate: ['value', translate] };
}

// --- helpers -----------------------------------------------------------------------------

function run(commandStack, changes, element) {
  if (!changes.length) { return; }
  commandStack.execute('properties-panel.multi-command-executor', changes.map(function (c) {
    return { cmd: 'element.updateModdleProperties',
             context: { element: element, moddleElement: c[0], properties: c[1] } };
  }));
}

function options(values, labels, empty) {
  var list = empty ? [{ value: '', label: empty }] : [];
  return list.concat(values.map(function (v) {
    var label = typeof labels === 'function' ? labels(v) : labels && labels[v];
    return { value: v, label: label && label !== v ? label + ' (' + v + ')' : v };
  }));
}

function timerOf(element) {
  var bo = getBusinessObject(element);
  return (bo.get('eventDefinitions') || []).filter(function (d) {
    return is(d, 'bpmn:TimerEventDefinition'); })[0] || null;
}

var WORKING_DAYS = /^\s*due_in_working_days\(\s*(\d+)\s*\)\s*$/;

// --- entries -----------------------------------------------------------------------------

function PropertyEntry(props) {
  var element = props.element, name = props.name;
  var commandStack = useService('commandStack'), bpmnFactory = useService('bpmnFactory'),
      translate = useService('translate'), debounce = useService('debounceInput');
  var bo = props.target || getBusinessObject(element);
  var common = {
    element: element, id: props.id, label: translate(props.label),
    description: props.description,
    getValue: function () { return getProperty(bo, name); },
    setValue: function (value) {
      run(commandStack, propertyChanges(bo, name, value, function (type, attrs) {
        return bpmnFactory.create(type, attrs); }), element);
    }
  };
  if (props.choices) {
    return h(SelectEntry, Object.assign(common, { getOptions: function () {
      var current = getProperty(bo, name);
      var values = props.choices.slice();
      if (current && values.indexOf(current) < 0) { values.push(current); }
      return options(values, props.labels || translate, translate('(none)'));
    } }));
  }
  if (props.area) {
    return h(TextAreaEntry, Object.assign(common, { debounce: debounce, rows: 2 }));
  }
  return h(TextFieldEntry, Object.assign(common, { debounce: debounce }));
}

// "→ 10/12/2026 17:00" on the variant's calendar, counted from today on the engine clock.
function WorkingDayPreview(props) {
  var translate = useService('translate');
  var studio = useService('nd73Studio');
  var state = useState(null), preview = state[0], setPreview = state[1];
  useEffect(function () {
    var days = (props.days || '').trim();
    if (!days) { setPreview(null); return undefined; }
    var live = true;
    studio.workingDays(days).then(function (answer) {
      if (live) { setPreview(answer); }
    });
    return function () { live = false; };
  }, [props.days]);
  if (!preview) { return null; }
  return h('span', { 'data-testid': 'working-day-preview', class: preview.error ? 'nd73-error' : '' },
    preview.error ? preview.error :
      translate('Due {date} on the calendar of {variant}',
                { date: preview.due_local, variant: preview.variant }));
}

function FormFields(props) {
  var translate = useService('translate');
  return h('span', { class: 'nd73-fields' },
           translate('Fields of the form: {list}', { list: props.fields.join(', ') }));
}

function DueInWorkingDays(props) {
  var translate = useService('translate'), studio = useService('nd73Studio');
  var bo = getBusinessObject(props.element);
  var value = getProperty(bo, 'dueInWorkingDays');
  var deadlines = Object.keys(studio.data.deadlines).map(function (name) {
    return name + ' = ' + studio.data.deadlines[name]; }).join(', ');
  return h(PropertyEntry, Object.assign({}, props, {
    name: 'dueInWorkingDays', label: 'Due in working days',
    description: h('span', null, h(WorkingDayPreview, { days: value }),
                   deadlines ? h('span', { class: 'nd73-deadlines' }, ' ' +
                     translate('Deadlines of the variant: {list}', { list: deadlines })) : null)
  }));
}

function TimerWorkingDays(props) {
  var element = props.element;
  var commandStack = useService('commandStack'), bpmnFactory = useService('bpmnFactory'),
      translate = useService('translate'), debounce = useService('debounceInput');
  var timer = timerOf(element);
  var current = timer && (timer.get('timeDate') || timer.get('timeDuration') ||
                          timer.get('timeCycle'));
  var match = current && WORKING_DAYS.exec(current.get('body') || '');
  return h(TextFieldEntry, {
    element: element, id: props.id, label: translate('Fires after (working days)'),
    debounce: debounce,
    description: h(WorkingDayPreview, { days: match ? match[1] : '' }),
    getValue: function () { return match ? match[1] : ''; },
    validate: function (value) {
      return value && !/^\d+$/.test(value.trim()) ? translate('A whole number of days') : null;
    },
    setValue: function (value) {
      value = (value || '').trim();
      if (!/^\d+$/.test(value)) { return; }
      var expression = bpmnFactory.create('bpmn:FormalExpression',
                                          { body: 'due_in_working_days(' + value + ')' });
      expression.$parent = timer;
      commandStack.execute('element.updateModdleProperties', {
        element: element, moddleElement: timer,
        properties: { timeDate: expression, timeDuration: undefined, timeCycle: undefined }
      });
    }
  });
}

// A gateway's condition or a script task's script, checked by the sandbox as deployment does.
function CodeEntry(props) {
  var element = props.element;
  var modeling = useService('modeling'), bpmnFactory = useService('bpmnFactory'),
      translate = useService('translate'), debounce = useService('debounceInput'),
      studio = useService('nd73Studio');
  var bo = getBusinessObject(element);
  var isScript = is(element, 'bpmn:ScriptTask');
  return h(TextAreaEntry, {
    element: element, id: props.id, debounce: debounce, rows: 3, monospace: true,
    label: translate(isScript ? 'Script' : 'Condition'),
    description: translate('Checked by the same sandbox as deployment'),
    getValue: function () {
      if (isScript) { return bo.get('script') || ''; }
      var condition = bo.get('conditionExpression');
      return (condition && condition.get('body')) || '';
    },
    setValue: function (value) {
      if (isScript) {
        modeling.updateProperties(element, { script: value || undefined });
      } else {
        var expression;
        if (value) {
          expression = bpmnFactory.create('bpmn:FormalExpression', { body: value });
        }
        modeling.updateProperties(element, { conditionExpression: expression });
      }
      studio.checkCode(element, props.id, value, isScript ? 'exec' : 'eval');
    }
  });
}

function LaneRole(props) {
  var element = props.element;
  var modeling = useService('modeling'), translate = useService('translate'),
      studio = useService('nd73Studio');
  var bo = getBusinessObject(element);
  return h(SelectEntry, {
    element: element, id: props.id, label: translate('Role'),
    getValue: function () { return bo.get('name') || ''; },
    setValue: function (value) { modeling.updateLabel(element, value); },
    getOptions: function () {
      var values = studio.data.roles.slice();
      if (bo.get('name') && values.indexOf(bo.get('name')) < 0) { values.push(bo.get('name')); }
      return options(values, null, translate('(none)'));
    }
  });
}

// An attribute of an extension element (a notification, a form rule).
function AttributeEntry(props) {
  var element = props.element, rule = props.rule, name = props.name;
  var commandStack = useService('commandStack'), translate = useService('translate'),
      debounce = useService('debounceInput');
  var common = {
    element: element, id: props.id, label: translate(props.label),
    getValue: function () { return rule.get(name) || ''; },
    setValue: function (value) { run(commandStack, [[rule, (function () {
      var p = {}; p[name] = value || undefined; return p; })()]], element); }
  };
  if (props.choices) {
    return h(SelectEntry, Object.assign(common, { getOptions: function () {
      return options(props.choices, translate);
    } }));
  }
  return h(TextFieldEntry, Object.assign(common, { debounce: debounce }));
}

// --- groups ------------------------------------------------------------------------------

function entry(id, element, component, extra, isEdited) {
  return Object.assign({ id: id, element: element, component: component,
                         isEdited: isEdited || isTextFieldEntryEdited }, extra || {});
}

function propertyEntries(element, data) {
  var entries = [];
  var userTask = is(element, 'bpmn:UserTask');
  // a message catch event (intermediate or boundary): its payload is a form, and the roles
  // that alone may send it (senderRole) are declared on it
  var messageEvent = (is(element, 'bpmn:IntermediateCatchEvent') ||
                      is(element, 'bpmn:BoundaryEvent')) &&
    (getBusinessObject(element).get('eventDefinitions') || []).some(function (d) {
      return is(d, 'bpmn:MessageEventDefinition'); });
  var formEvent = is(element, 'bpmn:StartEvent') || messageEvent;
  function add(name, label, extra, isEdited) {
    entries.push(entry('nd73-' + name, element, PropertyEntry,
                       Object.assign({ name: name, label: label }, extra || {}), isEdited));
  }
  if (userTask || formEvent) {
    add('form', 'Form', { choices: data.forms }, isSelectEntryEdited);
  }
  if (userTask || is(element, 'bpmn:Event')) {
    add('stage', 'Stage', { choices: Object.keys(data.stages), labels: data.stages },
        isSelectEntryEdited);
  }
  if (userTask) {
    entries.push(entry('nd73-dueInWorkingDays', element, DueInWorkingDays));
    add('dueDate', 'Due date (expression)');
    add('assigneeFrom', 'Assignee from data field');
    var fields = data.fields[getProperty(getBusinessObject(element), 'form')] || [];
    var hint = fields.length ? h(FormFields, { fields: fields }) : undefined;
    add('decisionFields', 'Decision fields', { description: hint });
    add('caseDecisionField', 'Case decision field', { description: hint });
    add('legalBasis', 'Legal basis', { area: true }, isTextAreaEntryEdited);
  }
  if (messageEvent) {
    add('senderRole', 'Sender roles (comma-separated)', {
      description: (data.roles || []).join(', ') });
    add('legalBasis', 'Legal basis', { area: true }, isTextAreaEntryEdited);
  }
  if (timerOf(element)) {
    entries.push(entry('nd73-timerWorkingDays', element, TimerWorkingDays));
  }
  var bo = getBusinessObject(element);
  if (is(element, 'bpmn:ScriptTask') ||
      (is(element, 'bpmn:SequenceFlow') && bo.sourceRef &&
       (is(bo.sourceRef, 'bpmn:ExclusiveGateway') || is(bo.sourceRef, 'bpmn:InclusiveGateway') ||
        bo.get('conditionExpression')))) {
    entries.push(entry('nd73-code', element, CodeEntry, {}, isTextAreaEntryEdited));
  }
  if (is(element, 'bpmn:Lane')) {
    entries.push(entry('nd73-role', element, LaneRole, {}, isSelectEntryEdited));
  }
  return entries;
}

function notificationGroup(element, injector) {
  if (!is(element, 'bpmn:FlowNode')) { return null; }
  var translate = injector.get('translate'), commandStack = injector.get('commandStack'),
      bpmnFactory = injector.get('bpmnFactory');
  var bo = getBusinessObject(element);
  var items = notificationsOf(bo).map(function (rule, index) {
    var id = element.id + '-notification-' + index;
    function field(name, label, choices) {
      return entry(id + '-' + name, element, AttributeEntry,
                   { rule: rule, name: name, label: label, choices: choices },
                   choices ? isSelectEntryEdited : isTextFieldEntryEdited);
    }
    return {
      id: id, label: rule.get('kind') || translate('(no kind)'), autoFocusEntry: id + '-kind',
      entries: [field('kind', 'Kind'), field('to', 'Recipients', RECIPIENTS),
                field('on', 'When it is sent', MOMENTS), field('when', 'Condition'),
                field('title', 'Title')],
      remove: function () { run(commandStack, removeExtensionChanges(bo, rule), element); }
    };
  });
  return {
    id: 'nd73-notifications', label: translate('Notifications'), component: ListGroup,
    items: items,
    add: function (event) {
      event.stopPropagation();
      run(commandStack, addExtensionChanges(bo, 'nd73:Notification',
        { kind: 'reminder', to: 'assignee', on: 'complete' },
        function (type, attrs) { return bpmnFactory.create(type, attrs); }), element);
    }
  };
}

function validationGroup(element, injector) {
  if (!is(element, 'bpmn:UserTask') && !is(element, 'bpmn:StartEvent') &&
      !is(element, 'bpmn:IntermediateCatchEvent')) { return null; }
  var translate = injector.get('translate'), commandStack = injector.get('commandStack'),
      bpmnFactory = injector.get('bpmnFactory');
  var bo = getBusinessObject(element);
  var items = validationsOf(bo).map(function (rule, index) {
    var id = element.id + '-validation-' + index;
    function field(name, label) {
      return entry(id + '-' + name, element, AttributeEntry,
                   { rule: rule, name: name, label: label });
    }
    return {
      id: id, label: rule.get('field') || translate('(no field)'), autoFocusEntry: id + '-field',
      entries: [field('field', 'Field'), field('when', 'Condition'),
                field('message', 'Message (Vietnamese)'), field('messageEn', 'Message (English)')],
      remove: function () { run(commandStack, removeExtensionChanges(bo, rule), element); }
    };
  });
  return {
    id: 'nd73-validations', label: translate('Validation rules'), component: ListGroup,
    items: items,
    add: function (event) {
      event.stopPropagation();
      run(commandStack, addExtensionChanges(bo, 'nd73:Validation', { field: '', when: '' },
        function (type, attrs) { return bpmnFactory.create(type, attrs); }), element);
    }
  };
}

// What a process declares (its category, who its proposer is, its report): on the process,
// or on the pool that shows it.
function processGroup(element, translate) {
  var bo = getBusinessObject(element);
  var target = is(element, 'bpmn:Process') ? bo :
    is(element, 'bpmn:Participant') ? bo.get('processRef') : null;
  if (!target) { return null; }
  function add(name, label, choices) {
    return entry('nd73-process-' + name, element, PropertyEntry,
                 { name: name, label: label, target: target, choices: choices },
                 choices ? isSelectEntryEdited : isTextFieldEntryEdited);
  }
  return {
    id: 'nd73-process', label: translate('Process (ND73)'), shouldOpen: true,
    entries: [add('category', 'Category', CATEGORIES), add('startUnit', 'Start unit', START_UNITS),
              add('proposerField', 'Proposer field'), add('reportTitle', 'Report title'),
              add('reportIssuer', 'Report issuer'), add('reportRecipients', 'Report recipients')]
  };
}

function Nd73PropertiesProvider(propertiesPanel, injector, translate, nd73Studio) {
  this.getGroups = function (element) {
    return function (groups) {
      var entries = propertyEntries(element, nd73Studio.data);
      if (entries.length) {
        groups.splice(1, 0, { id: 'nd73', label: translate('Workflow (ND73)'), entries: entries,
                               shouldOpen: true });
      }
      var process = processGroup(element, translate);
      if (process) { groups.splice(1, 0, process); }
      [notificationGroup(element, injector), validationGroup(element, injector)].forEach(
        function (group) { if (group) { groups.push(group); } });
      return groups;
    };
  };
  propertiesPanel.registerProvider(LOW_PRIORITY, this);
}
Nd73PropertiesProvider.$inject = ['propertiesPanel', 'injector', 'translate', 'nd73Studio'];

// --- the studio: page data, the REST calls and errors kept per element -------------------

function Studio(eventBus, selection, config) {
  var self = this;
  this.data = config.data;
  this.errors = {};                       // element id → { entry id → message }
  function show() {
    var selected = selection.get()[0];
    selected = selected && (selected.labelTarget || selected);   // a label shows its owner
    eventBus.fire('propertiesPanel.setErrors',
                  { errors: Object.assign({}, selected && self.errors[selected.id]) });
  }
  this.show = show;
  eventBus.on('selection.changed', function () { setTimeout(show, 0); });
  this.setError = function (elementId, entryId, message) {
    var errors = self.errors[elementId] = self.errors[elementId] || {};
    if (message) { errors[entryId] = message; } else { delete errors[entryId]; }
    eventBus.fire('nd73.errors.changed', { element: elementId, errors: errors });
    show();
  };
}
Studio.$inject = ['eventBus', 'selection', 'config.nd73Studio'];

Studio.prototype.request = function (url, options) {
  options = options || {};
  options.credentials = 'same-origin';
  options.headers = Object.assign({
    'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content,
    'Accept-Language': document.documentElement.lang
  }, options.headers || {});
  return fetch(url, options).then(function (response) {
    return response.json().then(function (body) { return { ok: response.ok, body: body }; });
  });
};

Studio.prototype.workingDays = function (days) {
  var url = '/api/v1/variants/' + encodeURIComponent(this.data.variant) +
    '/working-days?days=' + encodeURIComponent(days);
  return this.request(url).then(function (answer) {
    if (answer.ok) { return answer.body; }
    var field = (answer.body.errors || [])[0];        // the field's words in the page's language
    var english = document.documentElement.lang === 'en';
    return { error: field ? (english ? field.message_en : field.message) || field.message :
      answer.body.detail || answer.body.title };
  });
};

Studio.prototype.checkCode = function (element, entryId, code, mode) {
  var self = this;
  if (!(code || '').trim()) { self.setError(element.id, entryId, null); return Promise.resolve(); }
  return this.request('/api/v1/definitions/check-code', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ variant: this.data.variant, code: code, mode: mode })
  }).then(function (answer) {
    self.setError(element.id, entryId, answer.ok && !answer.body.valid ?
      answer.body.message : null);
  });
};

export function create(options) {
  var studioModule = {
    __init__: ['nd73Studio', 'nd73PropertiesProvider'],
    nd73Studio: ['type', Studio],
    nd73PropertiesProvider: ['type', Nd73PropertiesProvider]
  };
  return new Modeler({
    container: options.container,
    propertiesPanel: { parent: options.panel },
    nd73Studio: { data: options.data },
    additionalModules: [BpmnPropertiesPanelModule, BpmnPropertiesProviderModule, studioModule,
                        translateModule(options.words)],
    moddleExtensions: { nd73: descriptor }
  });
}

export { descriptor };
