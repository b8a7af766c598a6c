/** Schemas several route files use. */
import { Type } from '@fastify/type-provider-typebox';

export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'Stable error code (INVALID_ARGUMENT, UNKNOWN_LORA, QUEUE_FULL, …)' }),
      message: Type.String(),
      details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  },
  { description: 'Every error has this shape.' },
);

/** A base64 image in a JSON body (A1111 png-info style; a data: URL prefix is allowed). */
export const ImageBody = Type.Object({
  image: Type.String({ minLength: 1, description: 'base64 PNG, optionally as a data: URL' }),
});
