local errors = require "mde.errors"

describe("mde.errors", function()
  describe("new", function()
    it("builds an object with a readable tostring", function()
      local e = errors.new{ kind = "http", status = 404, code = "NotFound", message = "no such definition",
                            request_id = "abc-123" }
      assert.is_true(errors.is(e))
      assert.equal("mde: http 404 NotFound: no such definition [request id abc-123]", tostring(e))
    end)

    it("shows retry_after", function()
      local e = errors.new{ kind = "throttled", status = 429, retry_after = 7, message = "slow down" }
      assert.equal("mde: throttled 429: slow down (retry after 7 s)", tostring(e))
    end)

    it("refuses unknown kinds", function()
      assert.has.error(function() errors.new{ kind = "nope" } end, "mde.errors.new: unknown error kind nope")
    end)
  end)

  describe("from_response", function()
    it("reads the MDE error body", function()
      local e = errors.from_response({ status = 400, headers = {},
        body = { error = { code = "InvalidRequestBody", message = "bad body", target = "rid-1" } } })
      assert.same({ "http", 400, "InvalidRequestBody", "bad body", "rid-1" },
                  { e.kind, e.status, e.code, e.message, e.request_id })
    end)

    it("reads the login service's error body, code = the AADSTS code", function()
      local e = errors.from_response({ status = 401, headers = {},
        body = { error = "invalid_client", error_description = "AADSTS7000215: Invalid client secret provided.",
                 error_codes = { 7000215 }, correlation_id = "corr-9" } })
      assert.equal("auth", e.kind)
      assert.equal("AADSTS7000215", e.code)
      assert.equal("invalid_client", e.oauth_error)
      assert.equal("corr-9", e.request_id)
      assert.matches("AADSTS7000215: Invalid client secret", tostring(e), 1, true)
    end)

    it("maps 429 to throttled with Retry-After in seconds", function()
      local e = errors.from_response({ status = 429, headers = { ["retry-after"] = "12" },
        body = { error = { code = "TooManyRequests", message = "quota" } } })
      assert.equal("throttled", e.kind)
      assert.equal(12, e.retry_after)
    end)

    it("keeps a short excerpt of a non-JSON body", function()
      local e = errors.from_response({ status = 502, headers = { ["request-id"] = "r" },
        body = "<html>\n<body>Bad   gateway</body></html>" })
      assert.equal("<html> <body>Bad gateway</body></html>", e.message)
      assert.equal("r", e.request_id)
    end)
  end)

  describe("parse_retry_after", function()
    it("takes seconds", function()
      assert.equal(5, errors.parse_retry_after("5"))
      assert.equal(1.5, errors.parse_retry_after(" 1.5 "))
    end)
    it("takes an HTTP date", function()
      -- Sun, 06 Nov 1994 08:49:37 GMT = 784111777
      assert.equal(10, errors.parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111767))
      assert.equal(0, errors.parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111787))
      assert.equal(10, errors.parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", 784111767))
    end)
    it("returns nil for garbage", function()
      assert.is_nil(errors.parse_retry_after("soon"))
      assert.is_nil(errors.parse_retry_after(nil))
    end)
  end)
end)
