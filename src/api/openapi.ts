// The OpenAPI 3.0 document of the HTTP API, built from the route table that also validates requests.
import {
  COMPONENT_SCHEMAS,
  type JsonSchema,
  type ObjectSchema,
  type RouteSpec,
} from './schemas.js';

export interface OpenApiParameter {
  name: string;
  in: 'path' | 'query';
  required: boolean;
  description?: string;
  schema: JsonSchema;
  style?: 'form';
  explode?: boolean;
}

export interface OpenApiOperation {
  operationId: string;
  summary: string;
  tags: string[];
  security: Record<string, string[]>[];
  parameters: OpenApiParameter[];
  requestBody?: { required: boolean; content: Record<string, { schema: JsonSchema }> };
  responses: Record<
    string,
    { description: string; content?: Record<string, { schema: JsonSchema }> }
  >;
}

export interface OpenApiDocument {
  openapi: '3.0.3';
  info: { title: string; version: string; description: string };
  paths: Record<string, Record<string, OpenApiOperation>>;
  components: {
    schemas: Record<string, JsonSchema>;
    securitySchemes: Record<string, { type: 'http'; scheme: 'bearer'; description: string }>;
  };
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** `/a/:id/b` → `/a/{id}/b` */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

function parameters(schema: ObjectSchema | undefined, where: 'path' | 'query'): OpenApiParameter[] {
  if (schema === undefined) return [];
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties).map(([name, prop]) => {
    const { description, ...rest } = clone(prop);
    const p: OpenApiParameter = {
      name,
      in: where,
      required: where === 'path' || required.has(name),
      schema: rest,
    };
    if (description !== undefined) p.description = description;
    if (rest.type === 'array') {
      p.style = 'form';
      p.explode = true;
    }
    return p;
  });
}

export function buildOpenApi(
  routes: Readonly<Record<string, RouteSpec>>,
  info: { title: string; version: string; description: string },
): OpenApiDocument {
  const paths: OpenApiDocument['paths'] = {};
  for (const [name, r] of Object.entries(routes)) {
    const op: OpenApiOperation = {
      operationId: name,
      summary: r.summary,
      tags: [r.tag],
      security: r.auth ? [{ bearerAuth: [] }] : [],
      parameters: [...parameters(r.params, 'path'), ...parameters(r.querystring, 'query')],
      responses: {},
    };
    if (r.body !== undefined) {
      op.requestBody = {
        required: true,
        content: { 'application/json': { schema: clone(r.body) } },
      };
    }
    for (const [status, res] of Object.entries(r.responses)) {
      const contentType = res.contentType ?? 'application/json';
      const schema: JsonSchema =
        res.schema !== undefined
          ? { $ref: `#/components/schemas/${res.schema}` }
          : contentType === 'application/json'
            ? { type: 'object' }
            : { type: 'string' };
      op.responses[status] = {
        description: res.description,
        content: { [contentType]: { schema } },
      };
    }
    const path = openApiPath(r.url);
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.0.3',
    info,
    paths,
    components: {
      schemas: clone(COMPONENT_SCHEMAS),
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description: 'The admin token (VMCP_ADMIN_TOKEN)',
        },
      },
    },
  };
}
