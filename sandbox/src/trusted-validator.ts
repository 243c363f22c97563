/**
 * Stands in for the MCP SDK's Ajv-based output validator inside sandboxes (the build
 * points the SDK's `validation/ajv-provider.js` here).
 *
 * Why: Ajv is over a third of the client bundle, and loading it is paid by every warm
 * runner. The only server this client talks to is this service's own tool server, whose
 * results are built from pydantic models that match the advertised output schemas; so the
 * client checks the shape (an object) and trusts the rest.
 */
import type { JsonSchemaType, JsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/types.js";

export class AjvJsonSchemaValidator {
  getValidator<T>(_schema: JsonSchemaType): JsonSchemaValidator<T> {
    return (input: unknown) =>
      input !== null && typeof input === "object"
        ? { valid: true, data: input as T, errorMessage: undefined }
        : { valid: false, data: undefined, errorMessage: "structured content must be an object" };
  }
}
