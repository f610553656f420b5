// The project's extension namespace (processes/nd73.moddle.json) read and written on moddle
// elements, without the DOM: the properties panel applies these changes through the command
// stack (undo, redo), the round-trip test applies them directly (api/web/roundtrip.mjs).
import descriptor from '../../../processes/nd73.moddle.json';

export { descriptor };

function isA(element, type) {
  return !!element && typeof element.$instanceOf === 'function' && element.$instanceOf(type);
}

function extensionValues(bo, type) {
  var ext = bo.get('extensionElements');
  var values = (ext && ext.get('values')) || [];
  return type ? values.filter(function (v) { return isA(v, type); }) : values;
}

export function propertiesOf(bo) {
  return extensionValues(bo, 'nd73:Properties')[0] || null;
}

// The value of an nd73:property on a business object ('' when not declared).
export function getProperty(bo, name) {
  var props = propertiesOf(bo);
  var found = props && (props.get('values') || []).filter(function (p) {
    return p.get('name') === name; })[0];
  return found ? (found.get('value') || '') : '';
}

export function notificationsOf(bo) { return extensionValues(bo, 'nd73:Notification'); }
export function validationsOf(bo) { return extensionValues(bo, 'nd73:Validation'); }

// The changes that give ``bo`` the property ``name`` = ``value`` (an empty value removes it):
// a list of [moddleElement, properties] pairs, applied in order. ``create(type, attrs)``
// makes a moddle element (bpmnFactory.create in the modeler, moddle.create elsewhere).
export function propertyChanges(bo, name, value, create) {
  var changes = [];
  value = value === undefined || value === null ? '' : String(value).trim();
  var ext = bo.get('extensionElements');
  var props = propertiesOf(bo);
  var existing = props ? (props.get('values') || []).filter(function (p) {
    return p.get('name') === name; })[0] : null;
  if (!value) {
    if (existing) {
      changes.push([props, { values: props.get('values').filter(function (p) {
        return p !== existing; }) }]);
    }
    return changes;
  }
  if (existing) {
    changes.push([existing, { value: value }]);
    return changes;
  }
  if (!ext) {
    ext = create('bpmn:ExtensionElements', { values: [] });
    ext.$parent = bo;
    changes.push([bo, { extensionElements: ext }]);
  }
  if (!props) {
    props = create('nd73:Properties', { values: [] });
    props.$parent = ext;
    changes.push([ext, { values: (ext.get('values') || []).concat([props]) }]);
  }
  var property = create('nd73:Property', { name: name, value: value });
  property.$parent = props;
  changes.push([props, { values: (props.get('values') || []).concat([property]) }]);
  return changes;
}

// Add an extension element (a notification, a rule) of ``type`` with ``attrs``.
export function addExtensionChanges(bo, type, attrs, create) {
  var changes = [];
  var ext = bo.get('extensionElements');
  if (!ext) {
    ext = create('bpmn:ExtensionElements', { values: [] });
    ext.$parent = bo;
    changes.push([bo, { extensionElements: ext }]);
  }
  var added = create(type, attrs);
  added.$parent = ext;
  changes.push([ext, { values: (ext.get('values') || []).concat([added]) }]);
  return changes;
}

export function removeExtensionChanges(bo, element) {
  var ext = bo.get('extensionElements');
  if (!ext) { return []; }
  return [[ext, { values: ext.get('values').filter(function (v) { return v !== element; }) }]];
}

// Apply changes directly (outside the modeler).
export function apply(changes) {
  changes.forEach(function (change) {
    Object.keys(change[1]).forEach(function (key) { change[0].set(key, change[1][key]); });
  });
}
