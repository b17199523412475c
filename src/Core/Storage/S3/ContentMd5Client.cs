// An AmazonS3Client that also sends Content-MD5 on DeleteObjects, which S3-compatible servers such as
// OpenStack Swift's s3api require; SDK v4 sends only a CRC32 flexible checksum there.
using System.Security.Cryptography;
using Amazon.Runtime;
using Amazon.Runtime.Internal;
using Amazon.S3;
using Amazon.S3.Model;

namespace MirrorFS.Core.Storage.S3;

internal sealed class ContentMd5Client : AmazonS3Client
{
    public ContentMd5Client(AWSCredentials credentials, AmazonS3Config config) : base(credentials, config)
    {
    }

    /// <summary>Credentials from the SDK's default chain (profiles, container and instance roles).</summary>
    public ContentMd5Client(AmazonS3Config config) : base(config)
    {
    }

    protected override void CustomizeRuntimePipeline(RuntimePipeline pipeline)
    {
        base.CustomizeRuntimePipeline(pipeline);
        // After the marshaller the body exists; the signer runs later, so the header is signed like any other.
        pipeline.AddHandlerAfter<Marshaller>(new DeleteObjectsMd5Handler());
    }

    private sealed class DeleteObjectsMd5Handler : PipelineHandler
    {
        public override void InvokeSync(IExecutionContext executionContext)
        {
            AddMd5(executionContext);
            base.InvokeSync(executionContext);
        }

        public override Task<T> InvokeAsync<T>(IExecutionContext executionContext)
        {
            AddMd5(executionContext);
            return base.InvokeAsync<T>(executionContext);
        }

        private static void AddMd5(IExecutionContext context)
        {
            var request = context.RequestContext.Request;
            if (context.RequestContext.OriginalRequest is not DeleteObjectsRequest
                || request.Headers.ContainsKey("Content-MD5"))
            {
                return;
            }
            // v4 marshals the delete list into ContentStream (a seekable MemoryStream); older code paths into Content.
            if (request.Content is { } body)
            {
                request.Headers["Content-MD5"] = Convert.ToBase64String(MD5.HashData(body));
            }
            else if (request.ContentStream is { CanSeek: true } stream)
            {
                var start = stream.Position;
                var hash = MD5.HashData(stream);
                stream.Position = start;
                request.Headers["Content-MD5"] = Convert.ToBase64String(hash);
            }
        }
    }
}
