// The AssemblyScript example filter (@solo-io/proxy-runtime 0.1.8, root id
// "weft_example"): adds "x-weft-example: assemblyscript" to every request and
// to every response, and copies the response's status into
// "x-weft-example-status".
//
// Build (in this directory): npm ci && npm run build
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, log, LogLevelValues } from "@solo-io/proxy-runtime";

const NAME = "x-weft-example";
const LANG = "assemblyscript";

class ExampleRoot extends RootContext {
  onConfigure(configuration_size: u32): bool {
    log(LogLevelValues.info, "assemblyscript example filter configured");
    return true;
  }

  createContext(context_id: u32): Context {
    return new ExampleStream(context_id, this);
  }
}

class ExampleStream extends Context {
  constructor(context_id: u32, root_context: ExampleRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.request.add(NAME, LANG);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(a: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add(NAME, LANG);
    const status = stream_context.headers.response.get(":status");
    if (status != "") {
      stream_context.headers.response.replace("x-weft-example-status", status);
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => { return new ExampleRoot(context_id); }, "weft_example");
