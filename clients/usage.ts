// A few calls through the TypeScript client generated from openapi.json
// (@hey-api/openapi-ts, fetch client), so that `tsc --strict` checks the
// generated types as a caller uses them: request bodies, path and query
// parameters, the OAuth2 form, both security schemes, success and error
// bodies. Type-checked by scripts/client-check.sh, which maps the module
// name "stock-tracker-client" to the generated directory; it is not run.

import { createClient, createConfig } from "stock-tracker-client/client";
import {
  apiKeysCreate,
  authLogin,
  authToken,
  productsCreate,
  productsGet,
  productsList,
  productsUpdate,
  syncGet,
  syncStart,
} from "stock-tracker-client";
import type { ErrorBody, Product, SyncJob, ValidationErrorBody, ValidationIssue } from "stock-tracker-client";

/** Where an error body says the problem is, one line per issue. */
export function describe(error: ErrorBody | ValidationErrorBody): string[] {
  if (typeof error.detail === "string") {
    return [`${error.code}: ${error.detail}`];
  }
  return error.detail.map((issue: ValidationIssue) => `${issue.loc.join(".")}: ${issue.msg} (${issue.type})`);
}

export async function signIn(baseUrl: string, email: string, password: string, form: boolean): Promise<string> {
  const client = createClient(createConfig({ baseUrl }));
  const result = form
    ? await authToken({ client, body: { username: email, password, grant_type: "password" } })
    : await authLogin({ client, body: { email, password } });
  if (result.error !== undefined) {
    throw new Error(describe(result.error).join("; "));
  }
  return result.data.access_token;
}

/** Every product of the tenant, following `next_cursor`, with a bearer token. */
export async function allProducts(baseUrl: string, token: string): Promise<Product[]> {
  // Only the bearer scheme gets the token: the client sends every scheme the callback answers.
  const client = createClient(createConfig({ baseUrl, auth: (auth) => (auth.scheme === "bearer" ? token : undefined) }));
  const products: Product[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await productsList({ client, query: { limit: 200, cursor, sort: "-updated_at" } });
    if (page.error !== undefined) {
      throw new Error(describe(page.error).join("; "));
    }
    products.push(...page.data.items);
    if (page.data.next_cursor === null || page.data.next_cursor === undefined) {
      return products;
    }
    cursor = page.data.next_cursor;
  }
}

/** Creates a product and changes its stock; a 404 or 422 comes back typed. */
export async function restock(baseUrl: string, token: string, sku: string): Promise<Product | string[]> {
  const client = createClient(createConfig({ baseUrl, auth: (auth) => (auth.scheme === "bearer" ? token : undefined) }));
  const created = await productsCreate({ client, body: { sku, name: "Blue mug", price: "12.50", stock: 7 } });
  if (created.error !== undefined) {
    return describe(created.error);
  }
  const id: string = created.data.id;
  const updated = await productsUpdate({ client, path: { id }, body: { stock: 3 } });
  if (updated.response.status === 404 && updated.error !== undefined) {
    return describe(updated.error);
  }
  const read = await productsGet({ client, path: { id } });
  return read.error === undefined ? read.data : describe(read.error);
}

/** An API key for a script, then a sync started and read with that key. */
export async function syncWithKey(baseUrl: string, token: string, connectionId: string): Promise<SyncJob | string[]> {
  const admin = createClient(createConfig({ baseUrl, auth: (auth) => (auth.scheme === "bearer" ? token : undefined) }));
  const key = await apiKeysCreate({ client: admin, body: { name: "sync script", role: "member" } });
  if (key.error !== undefined) {
    return describe(key.error);
  }
  const secret: string = key.data.key;
  const client = createClient(createConfig({ baseUrl, auth: (auth) => (auth.type === "apiKey" ? secret : undefined) }));
  const started = await syncStart({ client, body: { connection_id: connectionId } });
  if (started.error !== undefined) {
    return describe(started.error);
  }
  // 202 is a job, or for {"all": true} a list of them.
  const job: SyncJob | undefined = "jobs" in started.data ? started.data.jobs[0] : started.data;
  if (job === undefined) {
    return ["no job"];
  }
  const read = await syncGet({ client, path: { id: job.job_id } });
  return read.error === undefined ? read.data : describe(read.error);
}
