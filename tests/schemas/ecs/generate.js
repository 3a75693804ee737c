#!/usr/bin/env node
// Writes ecs_flat.json: ECS's field definitions (generated/ecs/ecs_flat.yml of an ECS release),
// as the npm package @elastic/ecs ships them (its EcsFlat, built from that file), keeping what a
// record is checked against: each field's type, whether it is required, normalize, object_type,
// allowed values (with the event types each event category expects), expected values and
// pattern. See README.md.
//
//   npm pack @elastic/ecs@9.4.0 && tar xzf elastic-ecs-9.4.0.tgz
//   node tests/schemas/ecs/generate.js package > tests/schemas/ecs/ecs_flat.json
'use strict';

const path = require('path');

const pkg = path.resolve(process.argv[2] || 'package');
const { version } = require(path.join(pkg, 'package.json'));
const { EcsFlat } = require(path.join(pkg, 'build/commonjs/ecs_flat.js'));

const KEEP = ['type', 'required', 'normalize', 'object_type', 'expected_values', 'pattern', 'level'];
const fields = {};
for (const name of Object.keys(EcsFlat).sort()) {
  const field = EcsFlat[name];
  if (field.flat_name !== name) {
    throw new Error(`${name}: flat_name is ${field.flat_name}`);
  }
  const kept = {};
  for (const key of KEEP) {
    if (field[key] !== undefined) kept[key] = field[key];
  }
  if (field.allowed_values) {
    kept.allowed_values = field.allowed_values.map((v) =>
      v.expected_event_types ? { name: v.name, expected_event_types: v.expected_event_types } : { name: v.name },
    );
  }
  fields[name] = kept;
}
process.stdout.write(
  JSON.stringify({ ecs_version: version, source: `@elastic/ecs@${version} EcsFlat`, fields }, null, 1) + '\n',
);
